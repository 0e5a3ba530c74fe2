"""A bundle states the CPU features its code was compiled for (derived from the TVM target), the
schema bounds the list, and `verify --cpu-features` refuses a CPU that lacks one."""

from __future__ import annotations

import copy

import pytest

from edgeclip.cli.bundles import check_cpu_features
from edgeclip.errors import BundleError
from edgeclip.formats.manifest import check_manifest, variant_rows
from edgeclip.lower.target import cpu_features
from edgeclip.targets import load_target

MANIFEST = {
    "schema_version": 4, "name": "toy", "runner": "bin/runner", "modules": {},
    "members": {"bin/runner": {"sha256": "0" * 64, "bytes": 1, "executable": True}},
    "target": {"name": "rpi5", "arch": "aarch64", "cpu_features": ["asimd", "asimddp", "asimdhp"]},
}


def test_features_come_from_the_tvm_target():
    assert cpu_features(load_target("rpi4")) == ["asimd"]  # Cortex-A72: NEON, no dot product, and no AES asked
    assert cpu_features(load_target("rpi5")) == ["asimd", "asimddp", "asimdhp"]
    for mcpu, has, lacks in (("haswell", "avx2", "avx512bw"), ("cascadelake", "avx512_vnni", "avx_vnni")):
        board = load_target("x86-64-v3")
        board = type(board)(**{**board.__dict__, "tvm_cpu": {**board.tvm_cpu, "mcpu": mcpu}})
        found = cpu_features(board)
        assert has in found and lacks not in found and "fma" in found, (mcpu, found)


def test_the_schema_bounds_the_list_and_older_versions_have_none():
    check_manifest(MANIFEST, "ok.edgeclip")
    for bad in (["asimd", "asimd"], ["neon"], "asimd", [1], None, ["asimd"] * 99):
        manifest = copy.deepcopy(MANIFEST)
        manifest["target"]["cpu_features"] = bad
        with pytest.raises(BundleError, match="field `target.cpu_features` is .*not a list of distinct CPU feature"):
            check_manifest(manifest, "bad.edgeclip")
    older = copy.deepcopy(MANIFEST)
    older["schema_version"] = 3
    del older["target"]["cpu_features"]
    check_manifest(older, "v3.edgeclip")  # read as a bundle without a CPU check
    older["target"]["cpu_features"] = ["asimd"]
    with pytest.raises(BundleError, match="needs bundle schema version 4"):
        check_manifest(older, "v3.edgeclip")


def test_schema_5_requires_features_of_the_target_and_of_every_variant():
    row = {"name": "ternary-arm_neon", "precision": "ternary", "kernel_family": "arm_neon", "device": "cpu",
           "cpu_features": ["asimd"], "towers": {}}
    current = {**copy.deepcopy(MANIFEST), "schema_version": 5, "variants": [row]}
    del current["modules"]
    check_manifest(current, "v5.edgeclip")
    assert variant_rows(current) == [row]
    for edit, field in ((lambda m: m["target"].pop("cpu_features"), "target.cpu_features"),
                        (lambda m: m["variants"][0].pop("cpu_features"), "variants.0.cpu_features"),
                        (lambda m: m["variants"][0].update(precision="int4"), "variants.0.precision"),
                        (lambda m: m["variants"].append(dict(row)), "variants.1.name"),
                        (lambda m: m.update(modules={}), "modules")):
        bad = copy.deepcopy(current)
        edit(bad)
        with pytest.raises(BundleError, match=f"field `{field}`"):
            check_manifest(bad, "bad.edgeclip")
    # An older manifest reads as a variants table: each variant named by its precision.
    older = {**copy.deepcopy(MANIFEST), "modules": {"fp32": {}, "ternary": {}}}
    assert [(r["name"], r["cpu_features"]) for r in variant_rows(older)] == [
        ("ternary", MANIFEST["target"]["cpu_features"]), ("fp32", MANIFEST["target"]["cpu_features"])]


def test_verify_refuses_a_cpu_lacking_a_feature():
    target = MANIFEST["target"]
    with pytest.raises(BundleError) as refused:
        check_cpu_features("rpi5.edgeclip", target, "fp,asimd,evtstrm")  # a Cortex-A72's Features line
    assert str(refused.value).startswith("rpi5.edgeclip: this CPU lacks asimddp (dot product), asimdhp "
                                         "(half-precision arithmetic): build with --target rpi, rpi4")  # the fat rpi first
    check_cpu_features("rpi5.edgeclip", target, "fp asimd asimddp asimdhp")
    x86 = {"name": "x86-64", "arch": "x86_64", "cpu_features": cpu_features(load_target("x86-64-v3"))}
    with pytest.raises(BundleError, match="lacks"):
        check_cpu_features("x.edgeclip", {**x86, "cpu_features": [*x86["cpu_features"], "avx512_vnni"]}, "avx2,fma")
    haswell = ",".join(cpu_features(load_target("cuda-host")))  # a CPU that cuda-host's x86 code fits
    with pytest.raises(BundleError, match="lacks") as refused:
        check_cpu_features("x.edgeclip", {**x86, "cpu_features": [*x86["cpu_features"], "avx512_vnni"]}, haswell)
    assert "cuda-host" not in str(refused.value)  # an NVIDIA GPU machine is not a CPU to suggest
    check_cpu_features("old.edgeclip", {"name": "rpi5", "arch": "aarch64"}, "fp")  # schema 3: no check
