"""A serial line through termios alone: what the agent uses when pyserial is not installed, so a
board needs only python3 to receive a flash.

Only what is safe without pyserial: a tty device path (no `socket://` or `rfc2217://` URLs), a
rate termios has a constant for, 8N1 raw mode, optional RTS/CTS. Anything else is refused with
the fix (install pyserial) instead of guessed at.
"""

from __future__ import annotations

import errno
import os
import re
import select
import termios
import time

from edgeclip.flash.timing import POLL_SECONDS, READ_LIMIT

RATES = {int(name[1:]): getattr(termios, name) for name in dir(termios) if re.fullmatch(r"B\d+", name)}
NO_PYSERIAL = "pyserial is not installed (pip install pyserial)"


class TtyTransport:
    def __init__(self, path: str, baud: int, rtscts: bool, write_timeout: float):
        if "://" in path:
            raise ValueError(f"{path} is a pyserial URL but {NO_PYSERIAL}; install it, or give a tty path")
        if baud not in RATES:
            raise ValueError(f"{baud} baud has no termios constant and {NO_PYSERIAL}; use a standard rate "
                             "such as 115200, 921600 or 3000000, or install pyserial")
        if rtscts and not hasattr(termios, "CRTSCTS"):
            raise ValueError(f"this system's termios has no RTS/CTS flag and {NO_PYSERIAL}; install it")
        self.write_timeout = write_timeout
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            _make_raw(self.fd, RATES[baud], rtscts)
            termios.tcflush(self.fd, termios.TCIFLUSH)  # bytes left from an earlier session are not ours
        except termios.error as err:
            os.close(self.fd)
            raise OSError(f"{path} is not a serial line this system can configure ({err})") from err
        except BaseException:
            os.close(self.fd)
            raise

    def read_some(self) -> bytes:
        try:
            ready, _, _ = select.select([self.fd], [], [], POLL_SECONDS)
            if not ready:
                return b""
            data = os.read(self.fd, READ_LIMIT)
        except BlockingIOError:
            return b""
        except OSError as err:
            raise ConnectionError(f"serial port stopped answering: {err}") from err
        if not data:  # readable yet empty: the line hung up
            raise ConnectionError("serial port stopped answering: it hung up")
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.write_timeout
        while view:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise OSError(errno.ETIMEDOUT, "write timeout")
                if select.select([], [self.fd], [], left)[1]:
                    view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                continue
            except OSError as err:
                raise ConnectionError(f"serial port stopped taking data ({err})") from err

    def close(self) -> None:
        os.close(self.fd)


def _make_raw(fd: int, speed: int, rtscts: bool) -> None:
    """8N1, no echo, no line editing, no signals, no flow control but RTS/CTS when asked."""
    iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR | termios.IGNCR
               | termios.ICRNL | termios.IXON | termios.IXOFF | termios.IXANY)
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | getattr(termios, "CRTSCTS", 0))
    cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL | (termios.CRTSCTS if rtscts else 0)
    cc[termios.VMIN], cc[termios.VTIME] = 0, 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, speed, speed, cc])
