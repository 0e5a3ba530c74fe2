"""A fat bundle's weights stored once: identical arrays share a member, and a narrower kernel
tiling of packed weights (x86_avx2's 8 lanes) is recorded as a re-tiling of the wider one's member
(x86_avx512's 16), which `retiled` (the runner's `Retiled`) turns back into the exact bytes."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

from edgeclip.bundle.build import npy_bytes, packed_plan_line
from edgeclip.bundle.weights import WeightStore
from edgeclip.errors import BundleError, QuantError
from edgeclip.formats.manifest import check_manifest
from edgeclip.quant.packing import retiled, two_bit_from_base3
from edgeclip.schedules.ternary import pack_weights


def _trits(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1, 2, size=(n, k)).astype(np.int8)


@pytest.mark.parametrize("n", [32, 24, 8, 40])  # 24 and 40: the 16-lane tiling pads a tile the 8-lane one has not
def test_the_8_lane_tiling_is_the_16_lane_one_split(n):
    trits = _trits(n, 96, seed=n)
    wide, narrow = pack_weights(trits, 16)["w_packed"], pack_weights(trits, 8)["w_packed"]
    np.testing.assert_array_equal(retiled(wide, narrow.shape), narrow)
    np.testing.assert_array_equal(retiled(wide, wide.shape), wide)  # a split of one keeps the layout


def test_retiled_refuses_shapes_that_are_no_tiling():
    wide = pack_weights(_trits(32, 64), 16)["w_packed"]  # [2, KQ, 16 * KG]
    tiles, groups, width = wide.shape
    for bad in ((tiles * 2, groups + 1, width // 2), (tiles * 2, groups, width - 1), (tiles * 2 + 1, groups, width // 2),
                (tiles * 2 - 2, groups, width // 2), (tiles, groups), (tiles * 2, groups, 0)):
        with pytest.raises(QuantError, match="no tiling of shape"):
            retiled(wide, bad)


def test_the_store_keeps_one_member_for_both_tilings_and_for_equal_params():
    files: dict[str, bytes] = {}
    store = WeightStore(files, npy_bytes)
    trits = _trits(40, 96)
    wide, narrow = pack_weights(trits, 16)["w_packed"], pack_weights(trits, 8)["w_packed"]
    first = store.packed("modules/a/image.packed0.npy", wide)
    second = store.packed("modules/b/image.packed0.npy", narrow)
    assert first == {"path": "modules/a/image.packed0.npy", "shape": list(wide.shape)}
    assert second == {"path": first["path"], "shape": list(narrow.shape), "stored_shape": list(wide.shape)}
    assert list(files) == [first["path"]]
    stored = np.load(io.BytesIO(files[first["path"]]))
    np.testing.assert_array_equal(retiled(two_bit_from_base3(stored, second["stored_shape"]), second["shape"]), narrow)
    assert packed_plan_line(second) == (f"packed {first['path']} {','.join(map(str, narrow.shape))} "
                                        f"from {','.join(map(str, wide.shape))}")
    other = store.packed("modules/b/image.packed1.npy", pack_weights(_trits(40, 96, seed=1), 8)["w_packed"])
    assert "stored_shape" not in other and other["path"] == "modules/b/image.packed1.npy"
    scale = np.ones(40, np.float32)
    assert store.param("modules/a/p0.npy", scale) == store.param("modules/b/p0.npy", scale) == "modules/a/p0.npy"


MANIFEST = {
    "schema_version": 6, "name": "toy", "runner": "bin/runner",
    "members": {name: {"sha256": "0" * 64, "bytes": 1, "executable": name == "bin/runner"}
                for name in ("bin/runner", "m.so", "w.npy")},
    "target": {"name": "x86-64", "arch": "x86_64", "cpu_features": ["avx2"]},
    "variants": [{"name": "ternary", "precision": "ternary", "kernel_family": "x86_avx2", "device": "cpu",
                  "cpu_features": ["avx2"], "towers": {"image": {
                      "path": "m.so", "params": [],
                      "packed_weights": [{"path": "w.npy", "shape": [4, 3, 32], "stored_shape": [2, 3, 64]}]}}}],
}


def test_the_manifest_bounds_stored_shape_and_older_schemas_have_none():
    check_manifest(MANIFEST, "ok.edgeclip")
    for bad in ([2, 3], [2, 3, 0], [2, 3, "64"], "2,3,64", [2, 3, 1 << 40]):
        manifest = copy.deepcopy(MANIFEST)
        manifest["variants"][0]["towers"]["image"]["packed_weights"][0]["stored_shape"] = bad
        with pytest.raises(BundleError, match=r"packed_weights\.0\.stored_shape` is .*not a list of 3 positive sizes"):
            check_manifest(manifest, "bad.edgeclip")
    older = copy.deepcopy(MANIFEST)
    older["schema_version"] = 5
    with pytest.raises(BundleError, match="needs bundle schema version 6"):
        check_manifest(older, "v5.edgeclip")
