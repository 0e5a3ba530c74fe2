"""Board TOMLs: the shipped boards say what the hardware is, user boards plug in through
$EDGECLIP_TARGETS_DIR, and malformed files are refused naming the file, the field and the problem."""

from __future__ import annotations

import argparse
import json
import platform
import shutil

import pytest

from edgeclip.cli.bundles import add_bundle_commands
from edgeclip.errors import TargetError
from edgeclip.targets import list_targets, load_target, load_target_file, with_cuda_arch
from edgeclip.targets.loader import SHIPPED_DIR

SHIPPED = {"rpi4", "rpi5", "rpi", "jetson-orin-nano", "jetson-nano", "generic-aarch64", "x86-64", "x86-64-v3", "x86-64-vnni"}


def test_every_shipped_board_loads_and_tvm_accepts_its_targets():
    import tvm

    boards = {t.name: t for t in list_targets()}
    assert SHIPPED <= set(boards)
    for board in boards.values():
        assert tvm.target.Target(board.tvm_cpu).kind.name == "llvm"
        assert board.tvm_cpu["num-cores"] == board.cores
        if board.tvm_gpu:
            board = with_cuda_arch(board, "sm_90") if board.gpu_arch_is_parameter else board  # cuda-host
            gpu = tvm.target.Target(board.tvm_gpu)
            assert gpu.kind.name == "cuda" and gpu.host.kind.name == "llvm"


def test_boards_describe_their_hardware():
    rpi4, rpi5 = load_target("rpi4"), load_target("rpi5")
    assert (rpi4.tvm_cpu["mcpu"], rpi4.kernel_family, rpi4.cores) == ("cortex-a72", "arm_neon", 4)
    assert "+dotprod" not in rpi4.tvm_cpu["mattr"]
    assert (rpi5.tvm_cpu["mcpu"], rpi5.kernel_family) == ("cortex-a76", "arm_dotprod")
    assert "+dotprod" in rpi5.tvm_cpu["mattr"]
    orin = load_target("jetson-orin-nano")
    assert orin.cuda_arch == "sm_87" and orin.tvm_gpu["arch"] == "sm_87"
    assert orin.tvm_gpu["host"]["mtriple"] == "aarch64-linux-gnu"
    host = load_target("cuda-host")  # any x86-64 + NVIDIA GPU: the arch is given, never detected
    assert (host.arch, host.kernel_family, host.tvm_cpu["mcpu"]) == ("x86_64", "x86_avx2", "haswell")
    assert host.gpu_arch_is_parameter and with_cuda_arch(host, "sm_90").tvm_gpu["arch"] == "sm_90"
    assert with_cuda_arch(orin, "sm_87") == orin and not orin.gpu_arch_is_parameter
    nano = load_target("jetson-nano")
    assert nano.tvm_cpu["mcpu"] == "cortex-a57" and nano.tvm_gpu is None and nano.cuda_arch is None
    assert "sm_53" in (SHIPPED_DIR / "jetson-nano.toml").read_text()  # the file says why: CPU only
    for name in SHIPPED - {"x86-64", "x86-64-v3", "x86-64-vnni"}:
        board = load_target(name)
        assert board.arch == "aarch64" and board.cross_package == "g++-aarch64-linux-gnu"
        assert board.wheel_platform.endswith("_aarch64")


def test_x86_targets_name_fixed_portable_cpus():
    """Nothing is compiled for the build host's CPU model: each x86 target fixes a portable LLVM
    CPU level, and `x86-64` is the fat pair of both, VNNI first, fp32 on the AVX2 level."""
    from edgeclip.lower.target import check_mcpu, cpu_features

    v3, vnni, fat = load_target("x86-64-v3"), load_target("x86-64-vnni"), load_target("x86-64")
    assert (v3.kernel_family, v3.tvm_cpu["mcpu"]) == ("x86_avx2", "x86-64-v3")
    assert (vnni.kernel_family, vnni.tvm_cpu["mcpu"]) == ("x86_avx512", "x86-64-v4")
    for board in (v3, vnni):
        check_mcpu(board)  # LLVM knows the CPU: a typo would silently compile for a generic one
    assert "avx2" in cpu_features(v3) and not any(f.startswith("avx512") for f in cpu_features(v3))
    assert {"avx512bw", "avx512_vnni"} <= set(cpu_features(vnni))
    assert [m.name for m in fat.variants] == ["x86-64-vnni", "x86-64-v3"]
    assert (fat.kernel_family, fat.tvm_cpu["mcpu"], fat.tvm_cpu["num-cores"]) == ("x86_avx2", "x86-64-v3", fat.cores)
    assert [m.name for m in v3.variants] == ["x86-64-v3"] and not v3.members


def test_fat_rpi_carries_both_arm_families():
    fat = load_target("rpi")
    assert [(m.name, m.kernel_family) for m in fat.variants] == [("rpi5", "arm_dotprod"), ("rpi4", "arm_neon")]
    assert (fat.arch, fat.tvm_cpu["mcpu"], fat.memory_mb) == ("aarch64", "cortex-a72", load_target("rpi4").memory_mb)
    assert fat.to_dict()["members"] == ["rpi5", "rpi4"]


@pytest.mark.parametrize("text,problem", [
    ('members = ["rpi5"]', "list 2 to"),
    ('members = ["rpi5", "rpi9"]', "unknown target 'rpi9'"),
    ('members = ["rpi4", "generic-aarch64"]', "repeats a kernel family"),
    ('members = ["rpi5", "x86-64-v3"]', "mixes arch"),
    ('members = ["rpi5", "rpi4"]\nkernel_family = "arm_neon"', "cannot be set in a fat target"),
    ('members = ["rpi", "x86-64-v3"]', "cannot be the member of another"),
])
def test_malformed_fat_target_is_refused(tmp_path, monkeypatch, text, problem):
    monkeypatch.setenv("EDGECLIP_TARGETS_DIR", str(tmp_path))
    (tmp_path / "mix.toml").write_text(f'name = "mix"\n{text}\n')
    with pytest.raises(TargetError, match="mix.toml") as err:
        load_target("mix")
    assert problem in str(err.value)


def _board(**changes) -> str:
    """rpi4.toml's text with top-level keys replaced (value None deletes the key)."""
    lines = []
    for line in (SHIPPED_DIR / "rpi4.toml").read_text().splitlines():
        key = line.split("=")[0].strip()
        if key in changes and not line.startswith(" "):
            if changes[key] is not None:
                lines.append(f"{key} = {changes[key]}")
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_user_board_directory_adds_and_overrides(tmp_path, monkeypatch):
    (tmp_path / "my-board.toml").write_text(_board(name='"my-board"', cores="8", description='"mine"'))
    (tmp_path / "rpi4.toml").write_text(_board(description='"my own pi"'))
    monkeypatch.setenv("EDGECLIP_TARGETS_DIR", str(tmp_path))
    mine = load_target("my-board")
    assert mine.cores == 8 and mine.tvm_cpu["num-cores"] == 4  # the TVM table keeps its own value
    assert load_target("rpi4").description == "my own pi"
    assert {"my-board", *SHIPPED} <= {t.name for t in list_targets()}
    with pytest.raises(TargetError, match="unknown target 'nope'.*EDGECLIP_TARGETS_DIR"):
        load_target("nope")


@pytest.mark.parametrize("changes,field,problem", [
    ({"cores": '"four"'}, "cores", "positive integer"),
    ({"cores": "0"}, "cores", "positive integer"),
    ({"kernel_family": '"arm_sve"'}, "kernel_family", "known:"),
    ({"arch": '"riscv64"'}, "arch", "supported"),
    ({"wheel_platform": None}, "wheel_platform", "is missing"),
    ({"name": '"rpi-four"'}, "name", "must equal the file name"),
    ({"colour": '"red"'}, "colour", "not a known field"),
    ({"memory_mb": "true"}, "memory_mb", "wrong type"),
    ({"cores": '"auto"'}, "cores", "this host is"),
])
def test_malformed_board_names_file_field_and_problem(tmp_path, changes, field, problem):
    if field == "cores" and changes["cores"] == '"auto"' and platform.machine() == "aarch64":
        pytest.skip("`auto` is valid for an aarch64 board on an aarch64 host")
    path = tmp_path / "rpi4.toml"
    text = _board(**changes)
    if field == "colour":
        text = 'colour = "red"\n' + text
    path.write_text(text)
    with pytest.raises(TargetError) as err:
        load_target_file(path)
    message = str(err.value)
    assert str(path) in message and f"`{field}`" in message and problem in message


def test_malformed_tables_and_syntax(tmp_path):
    path = tmp_path / "rpi4.toml"
    path.write_text(_board().replace('mtriple = "aarch64-linux-gnu"', 'mtriple = "x86_64-linux-gnu"'))
    with pytest.raises(TargetError, match=r"rpi4\.toml: field `tvm\.cpu\.mtriple`"):
        load_target_file(path)
    path.write_text(_board().replace('debian_package = "g++-aarch64-linux-gnu"\n', ""))
    with pytest.raises(TargetError, match=r"field `cross\.debian_package` is missing"):
        load_target_file(path)
    path.write_text(_board() + '\n[tvm.gpu]\nkind = "cuda"\narch = "sm_87"\n')
    with pytest.raises(TargetError, match=r"field `cuda_arch`"):
        load_target_file(path)
    path.write_text(_board(cores="= 4"))
    with pytest.raises(TargetError, match=r"rpi4\.toml: not valid TOML"):
        load_target_file(path)


def test_targets_verb_lists_and_shows(capsys, tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    add_bundle_commands(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["targets"])
    args.func(args)
    listing = capsys.readouterr().out
    assert all(name in listing for name in SHIPPED)
    args = parser.parse_args(["targets", "show", "rpi5"])
    args.func(args)
    shown = json.loads(capsys.readouterr().out)
    assert shown["tvm"]["cpu"]["mcpu"] == "cortex-a76" and shown["file"].endswith("rpi5.toml")
    shutil.copy(SHIPPED_DIR / "rpi4.toml", tmp_path / "broken.toml")
    monkeypatch.setenv("EDGECLIP_TARGETS_DIR", str(tmp_path))
    with pytest.raises(TargetError, match="broken.toml: field `name`"):
        parser.parse_args(["targets"]).func(parser.parse_args(["targets"]))
