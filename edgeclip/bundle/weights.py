"""The bundle's weight members, each stored once: an array two modules take with the same bytes
is one member, and the packed ternary weights of a narrower kernel tiling (x86_avx2's 8 output
channels a tile) are read from the wider one's member (x86_avx512's 16) and re-tiled by the
runner at load, so a fat x86-64 bundle ships its trits once, as a fat rpi bundle does."""

from __future__ import annotations

import numpy as np

from edgeclip.formats.bundle import sha256_bytes
from edgeclip.quant.packing import base3_from_2bit, retiled

#: Narrower tilings looked for: a stored tile split in two (16 -> 8 lanes) or four.
SPLITS = (2, 4)
_ZERO_CODES = 0x55  # a 2-bit byte of four zero trits: what padding tiles hold


class WeightStore:
    """Collects bundle members for params and packed weights, naming each stored array once."""

    def __init__(self, files: dict[str, bytes], npy_bytes):
        self.files, self.npy_bytes = files, npy_bytes
        self.by_hash: dict[str, str] = {}  # sha256 of a member's bytes -> its path
        self.tilings: dict[str, tuple[str, list[int]]] = {}  # sha256 of a narrower tiling -> (member, stored shape)

    def param(self, path: str, array: np.ndarray) -> str:
        """The member holding `array`: `path`, or the earlier member with the same bytes."""
        data = self.npy_bytes(array)
        path = self.by_hash.setdefault(sha256_bytes(data), path)
        self.files[path] = data
        return path

    def packed(self, path: str, weight: np.ndarray) -> dict:
        """The manifest's packed_weights entry for 2-bit `weight`: its own base-3 member, or an
        earlier member it is a narrower tiling of (`stored_shape` then names that member's shape)."""
        found = self.tilings.get(_tiling_key(weight))
        if found is not None:
            member, stored_shape = found
            return {"path": member, "shape": list(weight.shape), "stored_shape": stored_shape}
        member = self.param(path, base3_from_2bit(weight))
        if weight.ndim == 3:
            self._remember_tilings(member, weight)
        return {"path": member, "shape": list(weight.shape)}

    def _remember_tilings(self, member: str, weight: np.ndarray) -> None:
        tiles, groups, width = weight.shape
        for split in (s for s in SPLITS if width % s == 0):
            narrow = retiled(weight, (tiles * split, groups, width // split))
            shapes = [narrow]
            if tiles and (narrow[-1] == _ZERO_CODES).all():  # the narrower tiling may need one tile less
                shapes.append(narrow[:-1])
            for candidate in shapes:
                self.tilings.setdefault(_tiling_key(candidate), (member, list(weight.shape)))


def _tiling_key(weight: np.ndarray) -> str:
    """What two packed weights share when they are the same tiling: their bytes and their shape."""
    return sha256_bytes(np.ascontiguousarray(weight).tobytes() + repr(weight.shape).encode())
