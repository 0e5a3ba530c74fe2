"""A framed link over a serial port (any pyserial URL, or a bare tty without pyserial) or an
accepted TCP connection.

Both ends only need `read_some`, `write` and `close`; a vanished port or peer raises
`ConnectionError` so callers have one thing to catch.
"""

from __future__ import annotations

import importlib.util
import socket
import time
from collections import deque

from edgeclip.flash.timing import POLL_SECONDS, READ_LIMIT, STALE_FRAME_SECONDS, WRITE_SLACK_SECONDS
from edgeclip.formats.serial import MAX_PAYLOAD, Damaged, Frame, FrameDecoder, encode


def open_port(url: str, baud: int, rtscts: bool = False, slack: float = WRITE_SLACK_SECONDS):
    """The transport for a serial port: pyserial when it is installed (device paths and every URL
    it opens), else a plain tty path through termios, so the zipapp agent runs on a bare python3.
    Raises ValueError for a request that can never work (bad baud, a URL without pyserial) and
    OSError for a port that cannot be opened now."""
    # A write may wait for flow control, but never forever: the longest frame's wire time plus slack.
    write_timeout = slack + 10 * (MAX_PAYLOAD + 64) / baud
    if importlib.util.find_spec("serial") is None:  # pyserial is optional on the device
        from edgeclip.flash.tty import TtyTransport

        return TtyTransport(url, baud, rtscts, write_timeout)
    return SerialTransport(url, baud, rtscts, write_timeout)


class SerialTransport:
    """pyserial (its SerialException is an OSError)."""

    def __init__(self, url: str, baud: int, rtscts: bool, write_timeout: float):
        import serial

        self.port = serial.serial_for_url(url, baudrate=baud, rtscts=rtscts, timeout=POLL_SECONDS, write_timeout=write_timeout)
        self.port.reset_input_buffer()  # bytes left from an earlier session are not ours

    def read_some(self) -> bytes:
        try:
            return self.port.read(min(self.port.in_waiting, READ_LIMIT) or 1)
        except OSError as err:
            raise ConnectionError(f"serial port stopped answering: {err}") from err

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except OSError as err:
            raise ConnectionError(f"serial port stopped taking data ({err})") from err

    def close(self) -> None:
        self.port.close()


class SocketTransport:
    """One accepted TCP connection, for agents that listen instead of owning a serial port."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(POLL_SECONDS)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small ACKs must not wait for Nagle

    def read_some(self) -> bytes:
        try:
            data = self.sock.recv(READ_LIMIT)
        except TimeoutError:
            return b""
        except OSError as err:
            raise ConnectionError(f"connection lost: {err}") from err
        if not data:
            raise ConnectionError("the peer closed the connection")
        return data

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise ConnectionError(f"connection lost: {err}") from err

    def close(self) -> None:
        self.sock.close()


class Link:
    """Sends frames and hands back received frames (or `Damaged` notices) one at a time."""

    def __init__(self, transport):
        self.transport = transport
        self.decoder = FrameDecoder()
        self._events: deque[Frame | Damaged] = deque()
        self._last_byte = time.monotonic()

    def send(self, frame_type: int, seq: int, payload: bytes = b"") -> int:
        data = encode(frame_type, seq, payload)
        self.transport.write(data)
        return len(data)

    def receive(self, timeout: float) -> Frame | Damaged | None:
        """The next event, or None once `timeout` seconds pass without one."""
        deadline = time.monotonic() + timeout
        while not self._events:
            now = time.monotonic()
            if now >= deadline:
                return None
            data = self.transport.read_some()
            if data:
                self._last_byte = now
                self._events.extend(self.decoder.feed(data))
            elif self.decoder.pending and now - self._last_byte > STALE_FRAME_SECONDS:
                self.decoder.drop_pending()  # or a cut frame's header would swallow the next frames
        return self._events.popleft()

    def close(self) -> None:
        self.transport.close()
