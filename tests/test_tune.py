"""`edgeclip tune`: a real (tiny) meta_schedule run writes records, builds apply them with zero
trials and stay equal to PyTorch; kernel knobs are only ever sampled among correct values."""

import fcntl
import itertools
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import tvm
from model_fixtures import make_tiny_clip

from edgeclip.errors import KernelError
from edgeclip.lower import knobs, records
from edgeclip.lower.build import compile, lower_module
from edgeclip.lower.importer import import_tower
from edgeclip.lower.schedule import RECORD_ATTR
from edgeclip.lower.target import resolve_target
from edgeclip.lower.tune import tune
from edgeclip.models.families import model_towers
from edgeclip.quant import TernaryConfig, freeze, quantize
from edgeclip.schedules import reference, x86, x86_avx2
from edgeclip.schedules.ternary import LinearShape

KERNEL_TASK = "ternary_linear_int8_17_64_128_bias"  # the tiny CLIP's MLP up-projection
FLOAT_TASK = "layer_norm"


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def student():
    model = make_tiny_clip(seed=3)
    quantize(model, TernaryConfig(policy="q-all"))
    freeze(model)
    return model.eval()


@pytest.fixture(scope="module")
def tuned_root(student, tmp_path_factory, one_thread):
    """A records root holding what a 2-trial tune of one float and one kernel task kept."""
    root = tmp_path_factory.mktemp("records")
    results = tune(student, "x86-64-v3", towers=["image"], kernels=True, trials=2, threads=1, root=root,
                   only=[FLOAT_TASK, KERNEL_TASK], keep_margin=float("-inf"), say=lambda line: None)
    assert {r.kind for r in results} == {"float", "kernel"}
    assert all(r.kept and r.trials >= 1 for r in results)
    return root


def test_tune_writes_a_meta_schedule_database(tuned_root):
    directory = tuned_root / "x86-64-v3"
    db = tvm.s_tir.meta_schedule.database.JSONDatabase(work_dir=str(directory), allow_missing=False)
    assert len(db.get_all_tuning_records()) >= 2  # meta_schedule itself reads what we wrote


def test_a_fresh_process_reads_the_records(tuned_root):
    """Kernel traces name our micro-kernel intrinsics; a new process must register them to parse."""
    code = ("from edgeclip.lower import records; from edgeclip.lower.target import resolve_target; "
            "print(len(records.load(resolve_target('x86-64-v3', 1).tvm(), 'x86-64-v3').get_all_tuning_records()))")
    env = {**os.environ, records.ROOT_ENV: str(tuned_root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1]) == len(records.read(tuned_root / "x86-64-v3")[1]) >= 2


def test_second_merge_keeps_the_store_consistent(tuned_root):
    directory = tuned_root / "x86-64-v3"
    workloads_before = (directory / records.WORKLOADS).read_text().splitlines()
    _, entries = records.read(directory)
    records.merge([record for _, record in entries], "x86-64-v3", tuned_root)  # the same records again
    assert (directory / records.WORKLOADS).read_text().splitlines() == workloads_before
    assert len(records.read(directory)[1]) == len(entries)


def test_merge_waits_for_a_concurrent_merge(tuned_root):
    """A second tune's merge must wait for the lock, or one of the two would lose its records."""
    directory = tuned_root / "x86-64-v3"
    _, entries = records.read(directory)
    with open(directory / records.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another tune in the middle of its merge
        merging = threading.Thread(target=records.merge, args=([r for _, r in entries], "x86-64-v3", tuned_root))
        merging.start()
        merging.join(timeout=1.0)
        assert merging.is_alive(), "merge wrote while another merge held the records lock"
        fcntl.flock(held, fcntl.LOCK_UN)
    merging.join(timeout=60)
    assert not merging.is_alive()
    assert len(records.read(directory)[1]) == len(entries)


def test_build_applies_records_and_matches_torch(student, tuned_root, monkeypatch, one_thread):
    monkeypatch.setenv(records.ROOT_ENV, str(tuned_root))
    target = resolve_target("x86-64-v3", 1)
    tower = model_towers(student)["image"]
    lowered, report = lower_module(import_tower(tower), target, "int8")
    tags = {gv.name_hint: f.attrs[RECORD_ATTR] for gv, f in lowered.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc) and f.attrs and RECORD_ATTR in f.attrs}
    assert any(name.startswith(FLOAT_TASK) for name in tags), tags  # the float record replaced DLight
    key = next(k for k in report.kernels if "_".join(map(str, k)) == KERNEL_TASK)
    db = records.load(target.tvm(), "x86-64-v3")
    chosen = knobs.knobs_from_record(db.query_tuning_record(knobs.workload(target, key), target.tvm(), "main"))
    assert tags[KERNEL_TASK] == f"record rows={chosen.rows} vecs={chosen.vecs} kgroups={chosen.kgroups}"

    pixels = np.random.default_rng(0).standard_normal(tower.inputs[0].shape).astype(np.float32)
    with torch.no_grad():
        want = tower.module(torch.from_numpy(pixels)).numpy()
    for act, floor in (("fp32", 0.999), ("int8", 0.995)):
        got = compile(student, "x86-64-v3", towers=["image"], act=act, threads=1).encode("image", pixels)
        assert cosine(got, want) >= floor, act


def test_corrupt_records_give_a_clear_error(student, tuned_root, tmp_path, monkeypatch):
    broken = tmp_path / "x86-64-v3"
    broken.mkdir()
    (broken / records.WORKLOADS).write_text((tuned_root / "x86-64-v3" / records.WORKLOADS).read_text())
    (broken / records.RECORDS).write_text('[0, {"truncated": \n')
    monkeypatch.setenv(records.ROOT_ENV, str(tmp_path))
    with pytest.raises(KernelError, match=r"tuning records .* are corrupt: line 1 is not JSON.*re-run `edgeclip tune`"):
        compile(student, "x86-64-v3", towers=["image"], threads=1)
    (broken / records.RECORDS).write_text(json.dumps([0, ["not", "a", "record"]]) + "\n")
    with pytest.raises(KernelError, match="record on line 1 does not parse"):
        records.load(resolve_target("x86-64-v3", 1).tvm(), "x86-64-v3", tmp_path)


def test_board_without_device_is_refused():
    with pytest.raises(KernelError, match=r"rpi4 is an aarch64 board .* run `edgeclip tune --target rpi4` on the board"):
        tune("demo", "rpi4", trials=1)


def test_a_fat_target_is_refused_naming_its_members():
    with pytest.raises(KernelError, match=r"x86-64 is a fat target.*--target x86-64-vnni or x86-64-v3"):
        tune("demo", "x86-64", trials=1)


@pytest.mark.parametrize("shape", [(7, 80, 24), (13, 48, 72)])
def test_every_sampled_knob_is_correct(shape, one_thread):
    """Each value the design space can sample builds a kernel equal to the numpy reference."""
    M, K, N = shape
    kernel = x86_avx2.FAMILY.micro_kernel
    spec = x86.linear_spec(x86_avx2.FAMILY, LinearShape(M, K, N, "channel", "int8"))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((M, K)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    scale, bias = rng.uniform(0.1, 1, N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    weights = x86_avx2.pack_weights(T, "int8")
    want = reference.ternary_linear_ref(x, T, scale, bias, "int8")
    choices = x86.knob_choices(spec, kernel)
    assert x86.default_knobs(spec, kernel).rows in choices["rows"]
    for rows, vecs, kgroups in itertools.product(*choices.values()):
        if rows * vecs > kernel.rows * kernel.vecs:
            continue
        func = x86.schedule_int8(spec, kernel, 1, x86.Knobs(rows, vecs, kgroups))
        lib = tvm.compile(tvm.IRModule({"main": func}), target={"kind": "llvm", "mcpu": "haswell", "num-cores": 1})
        out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
        lib["main"](*[tvm.runtime.tensor(a) for a in (x, *weights, scale, bias)], out)
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                                   err_msg=f"rows={rows} vecs={vecs} kgroups={kgroups}")


def test_knobs_outside_the_space_are_refused():
    kernel = x86_avx2.FAMILY.micro_kernel
    # Mp = 50: rows must divide it
    spec = x86.linear_spec(x86_avx2.FAMILY, LinearShape(50, 768, 3072, "channel", "int8"))
    with pytest.raises(KernelError, match="rows=3"):
        x86.schedule_int8(spec, kernel, 1, x86.Knobs(3, 1, 64))
    with pytest.raises(KernelError, match="kgroups=128"):  # int16 accumulators would overflow
        x86.schedule_int8(spec, kernel, 1, x86.Knobs(5, 2, 128))
