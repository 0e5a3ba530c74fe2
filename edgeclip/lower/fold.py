"""Fold weight arithmetic (int8 trits x scales, transposes, reshapes) into constants with numpy.

Why not `relax.transform.FoldConstant`: it compiles and runs one TVM kernel per folded call,
seconds for a tiny model and minutes for ViT-B/32. Weight preparation only uses a handful of
layout and elementwise ops, which numpy evaluates exactly (float32 products are IEEE in both).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir import GenericConst
from tvm.relax.expr_functor import PyExprMutator, mutator


def _shape_values(expr) -> list[int]:
    return [int(v) for v in expr.values]


def _permute(args, attrs):
    axes = attrs.axes
    return np.transpose(args[0], None if axes is None else [int(a) for a in axes])


def _expand_dims(args, attrs):
    out = args[0]
    for axis in sorted(int(a) % (out.ndim + len(attrs.axis)) for a in attrs.axis):
        out = np.expand_dims(out, axis)
    return out


def _squeeze(args, attrs):
    axis = attrs.axis
    return np.squeeze(args[0], None if axis is None else tuple(int(a) for a in axis))


_ELEMENTWISE = {"relax.multiply": np.multiply, "relax.add": np.add, "relax.subtract": np.subtract}
_LAYOUT = {
    "relax.permute_dims": _permute,
    "relax.expand_dims": _expand_dims,
    "relax.squeeze": _squeeze,
    "relax.astype": lambda args, attrs: args[0].astype(str(attrs.dtype)),
}
_WITH_SHAPE = {"relax.reshape": np.reshape, "relax.broadcast_to": np.broadcast_to}


@mutator
class _WeightFolder(PyExprMutator):
    def _value(self, expr):
        if isinstance(expr, relax.Var):
            expr = self.lookup_binding(expr)
        if isinstance(expr, GenericConst):
            return expr.value.numpy()
        return None

    def visit_call_(self, op):
        call = self.visit_expr_post_order(op)
        name = getattr(call.op, "name", None)
        if name in _WITH_SHAPE and isinstance(call.args[1], relax.ShapeExpr):
            data = self._value(call.args[0])
            return call if data is None else relax.const(np.ascontiguousarray(
                _WITH_SHAPE[name](data, _shape_values(call.args[1]))))
        if name not in _ELEMENTWISE and name not in _LAYOUT:
            return call
        values = [self._value(arg) for arg in call.args]
        if any(v is None for v in values):
            return call
        if name in _ELEMENTWISE:
            if len({v.dtype for v in values}) != 1:
                return call
            out = _ELEMENTWISE[name](*values).astype(values[0].dtype)
        else:
            out = _LAYOUT[name](values, call.attrs)
        return relax.const(np.ascontiguousarray(out))


def fold_weights(mod: tvm.IRModule) -> tvm.IRModule:
    """Every supported call on constants becomes a constant; unused bindings are dropped."""
    folder = _WeightFolder(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            folder.builder_.update_func(gv, folder.visit_expr(func))
    return relax.transform.DeadCodeElimination()(folder.builder_.get())
