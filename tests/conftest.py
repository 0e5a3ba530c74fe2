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
def tiny_clip_rpi4_checkpoint(tmp_path_factory):
    """The checkpoint behind `tiny_clip_rpi4_bundle`: a seeded tiny CLIP, ternarized q-all."""
    from model_fixtures import make_tiny_clip_dir

    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    root = tmp_path_factory.mktemp("tiny-clip-rpi4")
    teacher = make_tiny_clip_dir(root / "teacher")
    _, checkpoint = ternarize_source(str(teacher), TernaryConfig(policy="q-all"), root / "tiny-clip")
    return checkpoint


@pytest.fixture(scope="session")
def tiny_clip_rpi4_bundle(tiny_clip_rpi4_checkpoint):
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
    out = tiny_clip_rpi4_checkpoint.parent / "bundles"
    return build_bundle(tiny_clip_rpi4_checkpoint, "rpi4", out, baseline="fp32")
