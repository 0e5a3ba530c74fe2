"""The ternary rewrite pass: every matmul, patch convolution and embedding gather whose weight is
a ternary constant becomes a `call_tir` to the target family's kernel, with packed weights.

Why match constants instead of tagging layers before export: a frozen ternary layer exports as
`int8 trits x scale`, which `FoldConstant` turns into a float constant; ONNX's
`DequantizeLinear` folds the same way. A weight is ternary exactly when every output channel
holds one magnitude (its scale) and zeros, so trits and scales are recovered bit-exactly from
the constant, whatever importer produced it and whatever scale granularity (tensor, channel,
fused-QKV slices) it was trained with: all of them are per-channel scales here.

The 2-bit packed weights become parameters of the function, after its inputs, instead of
constants: a bundle stores them 1.6-bit beside the module and the device repacks them at load
(`edgeclip.quant.packing.two_bit_from_base3`), which a constant compiled into the library
would not allow. Scales, biases and weight sums stay constants (they are small).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from edgeclip.lower import kernels
from edgeclip.lower.fold import fold_weights
from edgeclip.lower.target import LowerTarget
from edgeclip.schedules.ternary import LinearShape, pack_embedding

MIN_WEIGHT_SIZE = 256  # smaller constants are shape arithmetic, not layers worth a kernel


def split_ternary_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(trits int8[N, K], scale float32[N]) with weight == trits * scale[:, None] exactly, or None."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.size < MIN_WEIGHT_SIZE:
        return None
    w = weight.astype(np.float32)
    scale = np.abs(w).max(axis=1)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    trits = np.rint(w / scale[:, None])
    if not np.array_equal(trits.astype(np.float32) * scale[:, None], w):
        return None
    return trits.astype(np.int8), scale


@dataclass
class RewriteReport:
    """How many operators became ternary kernels (tests compare it with the torch model)."""

    linears: int = 0
    convs: int = 0
    embeddings: int = 0
    kernels: dict = field(default_factory=dict)  # key -> GlobalVar, shared by equal shapes
    packed_weights: list = field(default_factory=list)  # arrays for main's trailing parameters

    @property
    def total(self) -> int:
        return self.linears + self.convs + self.embeddings


def _shape(expr) -> list[int]:
    return [int(d) for d in expr.ty.shape]


def _array(const) -> np.ndarray:
    return const.value.numpy()


def _dtype(expr) -> str:
    return str(expr.ty.dtype)


class TernaryRewriter:
    """Rewrites one IRModule for one target and activation mode; collects the kernels it uses."""

    def __init__(self, target: LowerTarget, act: str, builder: relax.BlockBuilder):
        self.target, self.act, self.builder = target, act, builder
        self.family = kernels.family(target)
        self.report = RewriteReport()
        self.weight_params: list[relax.Var] = []

    def _packed(self, array: np.ndarray) -> relax.Var:
        """A 2-bit packed weight as a new trailing parameter of the function being rewritten."""
        var = relax.Var(f"packed_w{len(self.weight_params)}", relax.TensorType(list(array.shape), str(array.dtype)))
        self.weight_params.append(var)
        self.report.packed_weights.append(array)
        return var

    def _kernel(self, key: tuple, make: Callable[[], tvm.tirx.PrimFunc]) -> tvm.ir.GlobalVar:
        gv = self.report.kernels.get(key)
        if gv is None:
            name = "_".join(str(k) for k in key)
            gv = self.builder.add_func(make().with_attr("global_symbol", name), name)
            self.report.kernels[key] = gv
        return gv

    def linear(self, x, shape: list[int], trits: np.ndarray, scale: np.ndarray, bias: np.ndarray | None):
        """y[..., N] = x[..., K] @ (trits * scale).T + bias through the family kernel; `shape` is x's."""
        n, k = trits.shape
        m = int(np.prod(shape[:-1]))
        with_bias = bias is not None or self.family.FAMILY.always_bias
        spec = LinearShape(m, k, n, "channel", self.act, with_bias)
        key = ("ternary_linear", self.act, m, k, n, "bias" if with_bias else "nobias")
        gv = self._kernel(key, lambda: self.family.linear_primfunc(spec, self.target.threads)
                          .with_attr("tirx.is_scheduled", True))
        packed, *extra = self.family.pack_weights(trits, self.act)
        operands = [self._packed(packed), *(relax.const(a) for a in extra), relax.const(scale)]
        if with_bias:
            operands.append(relax.const((np.zeros(n) if bias is None else bias).astype(np.float32)))
        x2d = relax.op.reshape(x, [m, k]) if len(shape) != 2 else x
        y = relax.call_tir(gv, [x2d, *operands], relax.TensorType([m, n], "float32"))
        return relax.op.reshape(y, [*shape[:-1], n]) if len(shape) != 2 else y

    def embedding(self, table: np.ndarray, ids):
        """out[..., D] = table[ids] for a ternary table (per-row scales)."""
        split = split_ternary_rows(table)
        if split is None:
            return None
        trits, scale = split
        vocab, dim = trits.shape
        id_shape = _shape(ids)
        n = int(np.prod(id_shape))
        gv = self._kernel(("ternary_embedding", n, vocab, dim), lambda: kernels.embedding_kernel(n, vocab, dim, self.target))
        flat_ids = relax.op.astype(relax.op.reshape(ids, [n]), "int32")
        rows = self._packed(pack_embedding(trits))
        out = relax.call_tir(gv, [flat_ids, rows, relax.const(scale)], relax.TensorType([n, dim], "float32"))
        self.report.embeddings += 1
        return relax.op.reshape(out, [*id_shape, dim])

    # ------------------------------------------------------------------ pattern callbacks
    def rewrite_function(self, func: relax.Function) -> relax.Function:
        x, w, b, ids = wildcard(), is_const(), is_const(), wildcard()
        mm = is_op("relax.matmul")(x, w)
        conv = is_op("relax.nn.conv2d")(x, w)
        take = is_op("relax.take")(w, ids)
        cast_take = is_op("relax.astype")(take)

        def on_linear(orig, match):
            bias = match.get(b)
            return self._matmul(orig, match[x], match[w], None if bias is None else _array(bias))

        def on_embedding(orig, match):
            gather = match[take] if cast_take in match else orig
            if int(gather.attrs.axis) != 0 or _dtype(orig) != "float32":
                return orig
            out = self.embedding(_array(match[w]), match[ids])
            return orig if out is None else out

        func = rewrite_call(is_op("relax.add")(mm, b) | is_op("relax.add")(b, mm), on_linear, func)
        func = rewrite_call(mm, on_linear, func)
        func = rewrite_call(conv, lambda orig, match: self._conv(orig, match[x], match[w]), func)
        func = rewrite_call(cast_take, on_embedding, func)
        func = rewrite_call(take, on_embedding, func)
        if not self.weight_params:
            return func
        params, self.weight_params = [*func.params, *self.weight_params], []
        return relax.Function(params, func.body, func.ret_ty, func.is_pure, func.attrs, func.span)

    def _matmul(self, orig, x, w_const, bias: np.ndarray | None):
        w = _array(w_const)
        if w.ndim == 3 and len(_shape(x)) == 3 and (w == w[:1]).all():
            w = w[0]  # at batch > 1 torch.export can give a linear as a bmm on its weight broadcast per row
        if w.ndim != 2 or _dtype(x) != "float32" or w.dtype != np.float32:
            return orig
        if bias is not None and (bias.ndim != 1 or bias.shape[0] != w.shape[1] or bias.dtype != np.float32):
            return orig
        split = split_ternary_rows(w.T)
        if split is None:
            return orig
        self.report.linears += 1
        return self.linear(x, _shape(x), *split, bias)

    def _conv(self, orig, x, w_const):
        """A patch embedding (stride = kernel, no padding) is a linear over flattened patches."""
        attrs, w = orig.attrs, _array(w_const)
        out_c, in_c, kh, kw = w.shape
        simple = (
            list(attrs.strides) == [kh, kw] and all(int(p) == 0 for p in attrs.padding)
            and all(int(d) == 1 for d in attrs.dilation) and int(attrs.groups) == 1
            and attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW" and attrs.out_layout == "NCHW"
        )
        batch, _, height, width = _shape(x)
        if not simple or height % kh or width % kw:
            return orig
        split = split_ternary_rows(w.reshape(out_c, -1))
        if split is None:
            return orig
        gh, gw = height // kh, width // kw
        patches = relax.op.reshape(x, [batch, in_c, gh, kh, gw, kw])
        patches = relax.op.permute_dims(patches, [0, 2, 4, 1, 3, 5])
        patches = relax.op.reshape(patches, [batch * gh * gw, in_c * kh * kw])
        y = self.linear(patches, [batch * gh * gw, in_c * kh * kw], *split, None)
        self.report.convs += 1
        return relax.op.permute_dims(relax.op.reshape(y, [batch, gh, gw, out_c]), [0, 3, 1, 2])


def rewrite_ternary(mod: tvm.IRModule, target: LowerTarget, act: str) -> tuple[tvm.IRModule, RewriteReport]:
    """Fold weight expressions to constants, swap ternary operators for kernels, drop dead weights."""
    mod = fold_weights(mod)
    builder = relax.BlockBuilder(mod)
    rewriter = TernaryRewriter(target, act, builder)
    updates = {gv: rewriter.rewrite_function(f) for gv, f in mod.functions_items() if isinstance(f, relax.Function)}
    mod = builder.get()
    for gv, func in updates.items():
        mod[gv] = func
    return relax.transform.DeadCodeElimination()(mod), rewriter.report
