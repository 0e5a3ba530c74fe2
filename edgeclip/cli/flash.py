"""`edgeclip flash` and `edgeclip agent`: send a bundle over a serial line; write the device agent
as one file (the work is in `edgeclip.flash` and `edgeclip.bundle.agent_app`)."""

from __future__ import annotations

from edgeclip.flash.timing import HELLO_SECONDS, count_argument, seconds_argument
from edgeclip.formats.serial import DEFAULT_CHUNK


def add_flash_command(subparsers) -> None:
    p = subparsers.add_parser(
        "flash",
        help="send a bundle to a device's edgeclip-agent over a serial line",
        description=(
            "Send BUNDLE to `edgeclip-agent serial` on the device and install it there. An interrupted "
            "transfer resumes where it stopped when you run the same command again."
        ),
    )
    p.add_argument("bundle", help="the .edgeclip bundle to send")
    p.add_argument("--port", required=True, help="serial device (/dev/ttyUSB0) or pyserial URL (socket://host:port, rfc2217://...)")
    p.add_argument("--baud", type=int, default=921600, help="line speed (default 921600)")
    p.add_argument("--rtscts", action="store_true", help="use RTS/CTS hardware flow control")
    p.add_argument("--timeout", type=seconds_argument, default=1.0, help="seconds to wait for each answer beyond wire time (default 1)")
    p.add_argument("--retries", type=count_argument, default=8, help="tries per frame after the first before giving up (default 8)")
    p.add_argument("--hello-timeout", type=seconds_argument, default=HELLO_SECONDS, metavar="S",
                   help=f"give up when no agent answers HELLO within S seconds (default {HELLO_SECONDS:g})")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help=f"data bytes per frame (default {DEFAULT_CHUNK})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_flash)
    a = subparsers.add_parser(
        "agent",
        help="write the device agent as one file (edgeclip-agent.pyz) to copy to a board before its first flash",
        description=(
            "Write edgeclip-agent as a single-file Python zipapp: it needs only python3 on the board "
            "(pyserial optional). Run it there with `python3 edgeclip-agent.pyz serial --port PORT "
            "[--dir DIR]`. Every bundle carries the same file as bin/edgeclip-agent.pyz."
        ),
    )
    a.add_argument("--out", required=True, help="where to write the zipapp, e.g. edgeclip-agent.pyz")
    a.set_defaults(func=run_agent)


def run_flash(args) -> None:
    from edgeclip.flash.host import flash

    result = flash(
        args.bundle,
        args.port,
        baud=args.baud,
        rtscts=args.rtscts,
        timeout=args.timeout,
        retries=args.retries,
        chunk=args.chunk,
        progress=not args.no_progress,
        hello_timeout=args.hello_timeout,
    )
    previous = f", previous {result.previous} kept for rollback" if result.previous else ""
    if result.already_current:
        print(f"{result.name} (sha256 {result.sha256[:12]}) is already current on {args.port}: nothing sent; "
              f"device runs {result.installed}{previous}")
        return
    resumed = f", resumed at byte {result.resumed_from}" if result.resumed_from else ""
    print(
        f"flashed {result.name} ({result.size / 1e6:.2f} MB, sha256 {result.sha256[:12]}) to {args.port}: "
        f"{result.throughput / 1e3:.1f} kB/s, {result.retries} retries{resumed}; device now runs {result.installed}{previous}"
    )


def run_agent(args) -> None:
    # The builder sits in the bundle layer (bundles carry the agent); it is standard library only.
    from edgeclip.bundle.agent_app import write_agent

    path = write_agent(args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB); on the board: python3 {path.name} serial --port PORT")
