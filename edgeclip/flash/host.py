"""The host side of `edgeclip flash`: send one bundle to an agent, stop-and-wait, resuming where it stopped.

Every frame waits for its answer (matched by sequence number) for `timeout` seconds plus the time
the frame needs on the wire at `baud`; a damaged, refused or missing answer sends it again, at most
`retries` times in a row. HELLO is sent again until `hello_timeout` seconds have passed instead, so
a port where nothing answers, or an agent busy with another client, ends in one line naming what
to check. The agent's ACK says how many bytes it holds, so the host always continues from the
device's count, never its own.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from edgeclip import console
from edgeclip.errors import FlashError
from edgeclip.flash.link import Link, open_port
from edgeclip.flash.space import needed_bytes, no_space
from edgeclip.flash.timing import HELLO_SECONDS
from edgeclip.formats import cpu_features
from edgeclip.formats.bundle import read_manifest, read_plan, sha256_file
from edgeclip.formats.layout import manifest_sha256, name_problem
from edgeclip.formats.serial import DEFAULT_CHUNK, OFFSET, SEQ_MASK, VERSION, Damaged, FrameType

INSTALL_SECONDS = 120.0  # extra wait for DONE: the device hashes, fsyncs and extracts the bundle


@dataclass(frozen=True)
class FlashResult:
    name: str
    sha256: str
    size: int
    device_arch: str
    resumed_from: int
    bytes_sent: int  # DATA payload bytes put on the wire, retransmissions included
    retries: int
    seconds: float
    installed: str  # `<name>/versions/<sha12>` under the device's install root
    previous: str | None
    already_current: bool = False  # the device ran this bundle already: nothing was sent

    @property
    def throughput(self) -> float:
        """Bundle bytes per second over the data phase of this session."""
        return (self.size - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0


def flash(
    bundle,
    port: str,
    baud: int = 921600,
    rtscts: bool = False,
    timeout: float = 1.0,
    retries: int = 8,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = True,
    hello_timeout: float = HELLO_SECONDS,
) -> FlashResult:
    """Send `bundle` to the agent on `port` (device path or pyserial URL) and have it installed."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    arch = manifest.get("target", {}).get("arch")
    if not arch:
        raise FlashError(f"{bundle}: the manifest names no target arch; rebuild the bundle")
    if problem := name_problem(manifest.get("name")):
        raise FlashError(f"{bundle}: {problem}; rebuild it with another --name")
    try:
        transport = open_port(port, baud, rtscts, slack=timeout)
    except (OSError, ValueError) as err:
        raise FlashError(f"cannot open {port} ({err}); check the device path or URL and that nothing else holds it") from err
    sender = _Sender(Link(transport), port, baud, timeout, retries, hello_timeout)
    try:
        return sender.send_bundle(bundle, manifest, arch, chunk, progress)
    except ConnectionError as err:
        raise FlashError(f"{port}: {err}; reconnect and flash again to resume") from err
    finally:
        sender.link.close()


class _Sender:
    def __init__(self, link: Link, port: str, baud: int, timeout: float, retries: int, hello_timeout: float):
        self.link, self.port, self.baud, self.timeout, self.max_retries = link, port, baud, timeout, retries
        self.hello_timeout = hello_timeout
        self.seq = random.getrandbits(32)  # answers to an earlier session can never match ours
        self.retries = 0
        self.bytes_sent = 0

    def send_bundle(self, bundle: Path, manifest: dict, arch: str, chunk: int, progress: bool) -> FlashResult:
        size, sha256 = bundle.stat().st_size, sha256_file(bundle)
        name = manifest["name"]
        hello = {"sha256": sha256, "size": size, "name": name, "arch": arch, "manifest_sha256": manifest_sha256(bundle)}
        answer = self.exchange(FrameType.HELLO, json.dumps(hello).encode(), FrameType.INFO, total=self.hello_timeout)
        info = _answer(answer, "arch", "free", "offset", "max_payload", "current", "previous", "up_to_date")
        if info["up_to_date"] and info.get("arch") == arch:  # like deploy: the same version is current and whole
            return FlashResult(name, sha256, size, info["arch"], 0, 0, self.retries, 0.0, info["current"],
                               info["previous"], already_current=True)
        self._check_device(info, arch, size, cpu_refusal(bundle, manifest, info.get("cpu_features")))
        chunk = max(1, min(chunk, int(info["max_payload"])))
        resumed_from = offset = int(info["offset"])
        started = time.monotonic()
        with open(bundle, "rb") as handle, _progress_bar(progress, size, offset, name) as bar:
            while offset < size:
                handle.seek(offset)
                data = handle.read(chunk)
                ack = self.exchange(FrameType.DATA, OFFSET.pack(offset) + data, FrameType.ACK)
                (held,) = OFFSET.unpack(ack.payload[: OFFSET.size].rjust(OFFSET.size, b"\0"))
                if held > size:
                    raise FlashError(f"the device claims {held} bytes of a {size}-byte bundle; restart the agent")
                if bar is not None:
                    bar.update(held - offset)
                    bar.set_postfix(retries=self.retries, refresh=False)
                offset = held
            seconds = time.monotonic() - started
        done = self.exchange(FrameType.END, json.dumps({"sha256": sha256}).encode(), FrameType.DONE, INSTALL_SECONDS)
        installed = _answer(done, "installed", "previous")
        return FlashResult(name, sha256, size, info["arch"], resumed_from, self.bytes_sent, self.retries, seconds,
                           installed["installed"], installed["previous"])

    def _check_device(self, info: dict, arch: str, size: int, cpu: str | None) -> None:
        """Refuse before any data moves: wrong architecture, a CPU lacking a feature the bundle's
        code needs (`cpu`, the runner's line), or too little room on the device."""
        problem = None
        if info.get("arch") != arch:
            problem = f"the device is {info.get('arch')} but the bundle is built for {arch}; build it for a {info.get('arch')} target"
        elif cpu:
            problem = cpu
        elif int(info["free"]) < needed_bytes(size, int(info["offset"])):
            problem = no_space(needed_bytes(size, int(info["offset"])), int(info["free"]))
        if problem:
            self._send(FrameType.ABORT, b"")
            raise FlashError(f"refused before sending: {problem}")

    def exchange(self, frame_type: int, payload: bytes, answer: int, extra_wait: float = 0.0,
                 total: float | None = None):
        """Send one frame until its answer arrives: at most `retries` more times, or with `total`,
        until that many seconds have passed. An ERROR answer or giving up raise FlashError."""
        seq = self.seq = (self.seq + 1) & SEQ_MASK
        wait = self.timeout + extra_wait + 10 * (len(payload) + 64) / self.baud
        give_up = None if total is None else time.monotonic() + total
        for attempt in range(self.max_retries + 1) if give_up is None else itertools.count():
            left = wait if give_up is None else min(wait, give_up - time.monotonic())
            if left <= 0:
                break
            if attempt:
                self.retries += 1
            self._send(frame_type, payload, seq)
            reply = self._await(seq, left)
            if reply is None:
                continue
            if reply.version != VERSION:
                raise FlashError(
                    f"the device speaks protocol version {reply.version}, this edgeclip {VERSION}; run this release's "
                    "agent there (`edgeclip agent --out edgeclip-agent.pyz`, then `python3 edgeclip-agent.pyz serial ...`)"
                )
            if reply.type == FrameType.ERROR:
                detail = _answer(reply, "code", "message")
                raise FlashError(f"the device refused ({detail.get('code')}): {detail.get('message')}")
            if reply.type == answer:
                return reply
        if total is not None:
            raise FlashError(
                f"no edgeclip-agent answered on {self.port} within {total:g} s; check the cable and port, that "
                "`edgeclip-agent serial` runs on the device at the same --baud, and that no other client holds "
                "its --listen port, then flash again"
            )
        raise FlashError(
            f"no valid answer to {FrameType(frame_type).name} after {self.max_retries + 1} tries; check the port, "
            "baud rate and that edgeclip-agent runs on the device, then flash again to resume"
        )

    def _send(self, frame_type: int, payload: bytes, seq: int | None = None) -> None:
        self.link.send(frame_type, self.seq if seq is None else seq, payload)
        if frame_type == FrameType.DATA:
            self.bytes_sent += len(payload) - OFFSET.size

    def _await(self, seq: int, wait: float):
        """The first frame answering `seq`; None on timeout or when the device says it was damaged."""
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            event = self.link.receive(left)
            if event is None or event.seq != seq:
                continue  # a stale answer from before a retry or an earlier session
            if isinstance(event, Damaged) or event.type == FrameType.NAK:
                return None
            return event
        return None


def cpu_refusal(bundle: Path, manifest: dict, features) -> str | None:
    """The runner's refusal for a device reporting `features` (INFO's cpu_features), or None; a
    device that reports none (null, an older agent) is left to the runner's own check."""
    if features is None:
        return None
    if not isinstance(features, list) or not all(isinstance(name, str) for name in features) or len(features) > 256:
        raise FlashError("the device's INFO has a cpu_features field that is not a list of names; update its agent")
    return cpu_features.plan_refusal(read_plan(bundle, manifest), features)


def _answer(frame, *keys: str) -> dict:
    """A device answer's JSON payload, checked for `keys`: a garbled answer is a FlashError, not a crash."""
    try:
        answer = json.loads(frame.payload)
        if all(key in answer for key in keys):
            return answer
    except (ValueError, TypeError):
        pass
    name = FrameType(frame.type).name
    raise FlashError(f"the device sent a malformed {name} (wanted {', '.join(keys)}); check that its edgeclip-agent matches this edgeclip")


def _progress_bar(enabled: bool, size: int, offset: int, name: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=size, initial=offset, unit="B", unit_scale=True, desc=name, dynamic_ncols=True,
                file=console.stream())


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
