"""Faults on a real link or a real kernel limit: the link going down, random packet loss
(nftables), a bandwidth cap (tc tbf) and a memory cgroup. `tc netem` is not used: this kernel
does not have it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from edgeclip.testbed.netns import Namespace, sh

CGROUP_ROOT = Path("/sys/fs/cgroup")


class LinkOutage:
    """Takes the device's link down once, when `start()` is first called (e.g. from an upload's
    progress callback, so the outage lands mid-transfer), for `seconds` or until the test ends."""

    def __init__(self, namespace: Namespace, seconds: float | None):
        self.namespace, self.seconds = namespace, seconds
        self.started: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.started is not None:
            return
        self.started = time.monotonic()
        self.namespace.set_link(False)
        if self.seconds is not None:
            self._thread = threading.Timer(self.seconds, self.namespace.set_link, args=(True,))
            self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def nft_missing() -> str | None:
    return None if shutil.which("nft") else "the `nft` command (apt-get install nftables)"


def random_drop(namespace: Namespace, percent: int) -> None:
    """Drop `percent`% of packets in both directions inside the namespace (nftables numgen)."""
    ruleset = (
        "table inet edgeclip_loss {\n"
        f"  chain input {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}\n"
        f"  chain output {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}\n"
        "}\n"
    )
    path = Path(f"/tmp/edgeclip-nft-{namespace.name}.nft")
    path.write_text(ruleset)
    try:
        namespace.exec("nft", "-f", str(path))
    finally:
        path.unlink()


def tc_missing() -> str | None:
    return None if shutil.which("tc") else "the `tc` command (apt-get install iproute2)"


def rate_limit(namespace: Namespace, rate: str) -> None:
    """Cap traffic towards the device (uploads) with a token bucket on the host end of the veth."""
    sh("tc", "qdisc", "add", "dev", namespace.host_if, "root", "tbf", "rate", rate, "burst", "16kb", "latency", "200ms")


class MemoryLimit:
    """A memory cgroup (v2 `memory.max`, else v1 `memory.limit_in_bytes`) holding a process tree."""

    def __init__(self, limit_bytes: int):
        self.path, self.version = _new_cgroup()
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit_bytes))
            swap = self.path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer took in this cgroup."""
        if self.version == 2:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
            return int(events.get("oom_kill", 0))
        control = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return int(control.get("oom_kill", 0))

    def remove(self) -> None:
        """Call after the processes in it are gone."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def memory_cgroup_missing() -> str | None:
    try:
        _cgroup_parent()
    except RuntimeError as err:
        return str(err)
    return None


def _cgroup_parent() -> tuple[Path, int]:
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return CGROUP_ROOT, 2
    if (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        return CGROUP_ROOT / "memory", 1
    raise RuntimeError("a memory cgroup controller (cgroup v2 `memory` in /sys/fs/cgroup, or v1 /sys/fs/cgroup/memory)")


def _new_cgroup() -> tuple[Path, int]:
    parent, version = _cgroup_parent()
    if version == 2:
        control = parent / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            control.write_text("+memory")
    path = parent / f"edgeclip-testbed-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    return path, version
