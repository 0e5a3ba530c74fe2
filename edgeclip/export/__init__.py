"""Export: ternary weight packing and the checkpoint directory format (see docs/checkpoint-format.md)."""

from edgeclip.export.checkpoint import read_checkpoint, write_checkpoint
from edgeclip.export.packing import pack_2bit, pack_base3, unpack_2bit, unpack_base3

__all__ = ["pack_2bit", "pack_base3", "read_checkpoint", "unpack_2bit", "unpack_base3", "write_checkpoint"]
