"""Test relay for the serial-flash tests: joins two pty masters like a cable that runs at `--baud`.

    python tests/flash_relay.py HOST_FD DEVICE_FD --baud 3000000 [--corrupt 0.05] [--seed 1] [--log FILE]

Each direction is cut into protocol frames; a `--corrupt` fraction of them get one byte flipped,
then bytes go out in 10 ms slices no faster than baud/10 bytes per second (8N1). `--log` gets one
line per forwarded frame: direction, frame type, length, and whether it was corrupted. The tests
kill this process to cut the link and start a new one to re-open it.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time

from edgeclip.formats.serial import CRC, HEADER, HEADER_SIZE, MAGIC


def split_frames(buffer: bytearray):
    """Complete frames (and any bytes before a marker) off the front of `buffer`."""
    while buffer:
        start = buffer.find(MAGIC)
        if start != 0:
            cut = len(buffer) if start < 0 else start
            yield None, bytes(buffer[:cut])
            del buffer[:cut]
            continue
        if len(buffer) < HEADER_SIZE:
            return
        _, _, frame_type, _, length = HEADER.unpack_from(buffer)
        end = HEADER_SIZE + length + CRC.size
        if len(buffer) < end:
            return
        yield frame_type, bytes(buffer[:end])
        del buffer[:end]


def forward(name: str, src: int, dst: int, args, rng: random.Random, log, lock: threading.Lock) -> None:
    bytes_per_second = args.baud / 10
    slice_size = max(1, int(bytes_per_second / 100))
    due = time.monotonic()
    buffer = bytearray()
    while True:
        buffer += os.read(src, 1 << 16)
        for frame_type, unit in split_frames(buffer):
            corrupted = frame_type is not None and rng.random() < args.corrupt
            if corrupted:
                unit = bytearray(unit)
                unit[rng.randrange(len(unit))] ^= 1 << rng.randrange(8)
            if log and frame_type is not None:
                with lock:
                    log.write(f"{name} {frame_type} {len(unit)} {int(corrupted)}\n")
                    log.flush()
            for at in range(0, len(unit), slice_size):
                piece = unit[at : at + slice_size]
                os.write(dst, piece)
                due = max(due, time.monotonic()) + len(piece) / bytes_per_second
                time.sleep(max(0.0, due - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host_fd", type=int)
    parser.add_argument("device_fd", type=int)
    parser.add_argument("--baud", type=int, required=True)
    parser.add_argument("--corrupt", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log")
    args = parser.parse_args()
    log = open(args.log, "a") if args.log else None
    lock = threading.Lock()
    lanes = [
        ("h2d", args.host_fd, args.device_fd, random.Random(args.seed)),
        ("d2h", args.device_fd, args.host_fd, random.Random(args.seed + 1)),
    ]
    threads = [threading.Thread(target=forward, args=(n, s, d, args, rng, log, lock), daemon=True) for n, s, d, rng in lanes]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
