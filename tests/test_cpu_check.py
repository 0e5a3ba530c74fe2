"""The runner and libedgeclip check the CPU before loading a module: the plan says what each
variant needs (and which other targets exist), the C++ feature table is the Python one, and a CPU
lacking a feature gets one line, not SIGILL."""

from __future__ import annotations

from edgeclip.bundle.build import cpu_plan_lines
from edgeclip.targets import load_target


def test_the_plan_declares_each_variants_features_and_the_other_targets():
    needs = ["asimd", "asimddp", "asimdhp"]
    lines = cpu_plan_lines([{"name": "ternary", "cpu_features": needs}, {"name": "fp32", "cpu_features": needs}],
                           load_target("rpi5"))
    assert lines[:2] == ["variant ternary asimd,asimddp,asimdhp", "variant fp32 asimd,asimddp,asimdhp"]
    alternatives = dict(line.split()[1:] for line in lines[2:])
    assert all(line.startswith("alternative ") for line in lines[2:])
    assert lines[2:4] == ["alternative rpi asimd", "alternative rpi4 asimd"] and "rpi5" not in alternatives  # closest first
    assert alternatives["jetson-orin-nano"] == "asimd,asimddp,asimdhp"
