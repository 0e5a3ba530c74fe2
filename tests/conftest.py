"""Fixtures shared across test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices gain nothing from threads, and spinning threads stall on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_clip_ternary(tmp_path_factory):
    """The tiny CLIP of model_fixtures, ternarized (q-all): a checkpoint that builds in seconds,
    behind `tiny_clip_rpi4_bundle` and the device tests that compare against its PyTorch towers."""
    from model_fixtures import make_tiny_clip_dir

    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    root = tmp_path_factory.mktemp("tiny-clip-ternary")
    teacher = make_tiny_clip_dir(root / "teacher")
    _, checkpoint = ternarize_source(str(teacher), TernaryConfig(policy="q-all"), root / "tiny-clip")
    return checkpoint


@pytest.fixture(scope="session")
def tiny_clip_rpi4_bundle(tiny_clip_ternary):
    """A real rpi4 bundle: tiny CLIP, q-all, both towers compiled by edgeclip.lower for arm_neon,
    the fp32 baseline, the cross-compiled native runner. Built once per run (~40 s) because the
    bundle tests (qemu-user) and the remote tests (emulated board over SSH) both need one."""
    from edgeclip.bundle.build import build_bundle
    from edgeclip.errors import ToolchainError
    from edgeclip.native.toolchain import require_compiler
    from edgeclip.targets import load_target

    try:
        require_compiler(*load_target("rpi4").compiler)
    except ToolchainError as err:
        pytest.skip(f"needs the aarch64 cross compiler: {err}")
    out = tiny_clip_ternary.parent / "bundles"
    return build_bundle(tiny_clip_ternary, "rpi4", out, baseline="fp32")


BAKED_LABELS = ["a cat", "a dog", "a red car", "an airplane", "ein Fahrrad 🚲"]
BAKED_PROMPT = "a photo of {}, seen from afar"


@pytest.fixture(scope="session")
def baked_labels_bundle(tiny_clip_ternary, tmp_path_factory):
    """`edgeclip build --towers image --labels FILE --prompt P` for this host: labels baked in from a
    file (with blank lines and padding to skip), no text tower bundled: .path, .labels, .prompt."""
    import platform
    from types import SimpleNamespace

    from edgeclip.cli import main

    if platform.machine() != "x86_64":
        pytest.skip("the baked-labels bundle is built for x86-64 hosts")
    root = tmp_path_factory.mktemp("baked-labels")
    labels = root / "labels.txt"
    labels.write_text("\n".join(f"  {label} \n" for label in BAKED_LABELS) + "\n\n", encoding="utf-8")
    assert main(["build", "--model", str(tiny_clip_ternary), "--target", "x86-64-v3", "--towers", "image",
                 "--labels", str(labels), "--prompt", BAKED_PROMPT, "-o", str(root / "out")]) == 0
    (bundle,) = (root / "out").iterdir()
    return SimpleNamespace(path=bundle, labels=BAKED_LABELS, prompt=BAKED_PROMPT)
