"""Room on the device for a bundle: what receiving and installing one needs, and the one message
both ends give when the device has less (before sending, or on ENOSPC / EDQUOT mid-way)."""

from __future__ import annotations

import errno

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def needed_bytes(size: int, received: int = 0) -> int:
    """What a bundle of `size` bytes still needs once `received` of them are held: the rest of
    the bundle, then its extracted copy (members take about what they weigh in the tar)."""
    return (size - received) + size


def extracted_bytes(manifest: dict, block: int) -> int:
    """What the members of a parsed manifest take on a filesystem of `block`-byte blocks: each
    file rounds up to whole blocks, so many small members take far more than their tar."""
    return sum(-(-entry["bytes"] // block) * block for entry in manifest["members"].values())


def no_space(need: int, have: int) -> str:
    return (f"no space left on the device (need {need / 1e6:.1f} MB, have {have / 1e6:.1f} MB); "
            "nothing was installed, free space on the device and flash again")


def out_of_space(err: BaseException | None) -> bool:
    """ENOSPC or EDQUOT, raised as such or as the cause of a layer's error."""
    while err is not None:
        if getattr(err, "errno", None) in SPACE_ERRNOS:
            return True
        err = err.__cause__
    return False
