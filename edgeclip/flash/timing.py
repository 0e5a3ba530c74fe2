"""How the serial link waits: the poll interval and read size every transport uses, and the
pauses that count as a dead frame or a stuck write."""

POLL_SECONDS = 0.02
READ_LIMIT = 1 << 16
STALE_FRAME_SECONDS = 0.2  # a frame is written in one go: a pause this long mid-frame means its sender gave up
WRITE_SLACK_SECONDS = 1.0
