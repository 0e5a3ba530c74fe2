"""Every kernel family module exports the one interface of `edgeclip.schedules.family`, and its
kernels' parameters are what that interface promises (weight operands, then scale and bias)."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from edgeclip.errors import KernelError
from edgeclip.schedules.family import FAMILIES, KernelFamily, load_family
from edgeclip.schedules.ternary import LinearShape
from edgeclip.targets import list_targets
from edgeclip.targets.loader import KERNEL_FAMILIES

INTERFACE = {"FAMILY", "linear_primfunc", "pack_weights"}
# What boards name (x86-64's `auto` resolves to one of KERNEL_FAMILIES on this host), plus CUDA.
NAMES = sorted({t.kernel_family for t in list_targets()} | set(KERNEL_FAMILIES) | {"cuda"})


def defined_names(module) -> set[str]:
    """Public names a module's own top level defines (imports excluded)."""
    names = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def test_the_lookup_knows_every_family_a_board_can_name():
    assert set(NAMES) == set(FAMILIES)
    with pytest.raises(KernelError, match="unknown kernel family 'ternary'"):
        load_family("ternary")


def test_every_family_exports_exactly_the_interface():
    modules = {name: load_family(name) for name in NAMES}
    reference = modules[NAMES[0]]
    for name, module in modules.items():
        assert defined_names(module) == INTERFACE == set(module.__all__), name
        assert isinstance(module.FAMILY, KernelFamily) and module.FAMILY.name == name
        for function in ("linear_primfunc", "pack_weights"):
            assert inspect.signature(getattr(module, function)) == inspect.signature(getattr(reference, function)), \
                f"{name}.{function}"
    assert list(inspect.signature(reference.linear_primfunc).parameters) == ["spec", "threads"]
    assert list(inspect.signature(reference.pack_weights).parameters) == ["trits", "act"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("act", ["int8", "fp32"])
def test_weight_operands_come_in_parameter_order(name, act):
    """pack_weights gives exactly the kernel's parameters between x and scale, shapes and dtypes
    included; only a u8 x s8 int8 kernel takes weight sums."""
    module = load_family(name)
    M, K, N = 5, 40, 24
    trits = np.random.default_rng(0).integers(-1, 2, (N, K)).astype(np.int8)
    weights = module.pack_weights(trits, act)
    func = module.linear_primfunc(LinearShape(M, K, N, "channel", act, bias=True), 1)
    params = list(func.params)  # TVM 0.27: PrimFunc parameters are Buffers
    assert [p.name for p in params[:1] + params[-3:]] == ["x", "scale", "bias", "y"]
    assert len(weights) == (2 if act == "int8" and module.FAMILY.act_offset else 1)
    for array, buffer in zip(weights, params[1:-3], strict=True):
        assert (array.shape, str(array.dtype)) == (tuple(int(d) for d in buffer.shape), str(buffer.dtype))


@pytest.mark.parametrize("name", NAMES)
def test_bias_is_optional_unless_the_family_always_takes_one(name):
    module = load_family(name)
    shape = LinearShape(5, 40, 24, "channel", "int8", bias=False)
    if module.FAMILY.always_bias:
        with pytest.raises(KernelError, match="always takes a bias"):
            module.linear_primfunc(shape, 1)
    else:
        func = module.linear_primfunc(shape, 1)
        assert "bias" not in [p.name for p in func.params]
