"""How the serial link waits: the poll interval and read size every transport uses, the pauses
that count as a dead frame or a stuck write, and the bounds on a handshake and an idle client
(with the argparse types the commands read those bounds and counts with)."""

import argparse

POLL_SECONDS = 0.02
READ_LIMIT = 1 << 16
STALE_FRAME_SECONDS = 0.2  # a frame is written in one go: a pause this long mid-frame means its sender gave up
WRITE_SLACK_SECONDS = 1.0
IDLE_CLIENT_SECONDS = 10.0  # a --listen agent drops a connection that sent no frame this long
# The flasher's bound on HELLO: longer than IDLE_CLIENT_SECONDS, so a flash queued behind an idle
# client is still served once the agent drops that client.
HELLO_SECONDS = 15.0


def seconds_argument(text: str) -> float:
    """A command-line bound in seconds: a positive, finite number (0 or NaN would never wait)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def count_argument(text: str) -> int:
    """A command-line count that may be 0 (no retries) but not negative or fractional."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return count
