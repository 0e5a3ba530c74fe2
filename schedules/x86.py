"""Schedule shared by the x86-64 families; `x86_avx512` and `x86_avx2` differ only in the
16x4 / 8x4 integer dot-product intrinsic, the tile width and the target.

Loop nest of the int8 linear (one N tile of `tile_n` channels per outer iteration):

    x_absmax, x_quant            at root, once per call (quantization fused in the PrimFunc)
    for no in N tiles (parallel when threads > 1):
        w_unpack[no]             2-bit -> int8 tile, once, reused by every row
        for mo in row blocks of `rows`:
            acc (local) = 0
            for ko: for mi in rows (unrolled): tensorized dot(tile_n x 4)
            y[rows, tile] = rescale(acc)        (vectorized epilogue)

The GEMM is `compute_at` into the tiled output (reverse_compute_at is refused while the
quantization producers sit at root).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from .ternary import LinearSpec, linear_prim_func

MAX_ROW_BLOCK = 6  # accumulator registers per N tile (rows processed together)


def dot_desc(lanes: int):
    """Semantics of the intrinsic: C[i] += sum_k u8 A[k] * s8 B[i, k] over a lanes x 4 tile."""

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def register_intrin(name: str, lanes: int, impl) -> str:
    """Register once per process (TensorIntrin.register refuses duplicates)."""
    try:
        TensorIntrin.get(name)
    except Exception:  # noqa: BLE001 - TVM raises a generic error for unknown names
        TensorIntrin.register(name, dot_desc(lanes), impl)
    return name


def row_block(m: int) -> int:
    """Largest divisor of M up to MAX_ROW_BLOCK: full blocks keep the tensorized body predicate-free."""
    return max(b for b in range(1, MAX_ROW_BLOCK + 1) if m % b == 0)


def _schedule_quantization(sch: s_tir.Schedule, spec: LinearSpec) -> None:
    """Vectorize the per-row absmax and the uint8 quantization (both stream x once)."""
    quant = sch.get_sblock("x_quant")
    _, k = sch.get_loops(quant)
    if spec.K == spec.Kp and spec.K % 16 == 0:
        sch.vectorize(sch.split(k, [None, 16])[1])
        absmax = sch.get_sblock("x_absmax")
        _, kr = sch.get_loops(absmax)
        _, kri = sch.split(kr, [None, 16])
        rf = sch.rfactor(kri, 1)
        sch.vectorize(sch.get_loops(rf)[-1])


def schedule_linear(spec: LinearSpec, intrin: str | None, threads: int = 1) -> tirx.PrimFunc:
    """Schedule the shared TE linear for an x86 family; intrin=None leaves the dot un-tensorized."""
    sch = s_tir.Schedule(linear_prim_func(spec))
    tn, rows = spec.tile_n, row_block(spec.M)
    y = sch.get_sblock("y")
    m, n = sch.get_loops(y)
    yno, yni = sch.split(n, [None, tn])
    ymo, ymi = sch.split(m, [None, rows])
    sch.reorder(yno, ymo, ymi, yni)
    acc = sch.get_sblock("acc")
    sch.compute_at(acc, ymo, preserve_unit_loops=True)
    sch.compute_at(sch.get_sblock("w_unpack"), yno, preserve_unit_loops=True)
    sch.set_scope(acc, 0, "local")
    am, _, ani, ako, aki = sch.get_loops(acc)[-5:]
    sch.reorder(ako, am, ani, aki)
    uko, u1, u2 = sch.get_loops(sch.get_sblock("w_unpack"))[-3:]
    sch.unroll(sch.split(uko, [None, 4])[1])  # one shift amount per unrolled copy
    sch.vectorize(sch.fuse(u1, u2) if spec.act == "int8" else u2)
    if threads > 1:
        sch.parallel(yno)
    sch.vectorize(yni)
    if spec.act == "int8":
        _schedule_quantization(sch, spec)
        sch.unroll(am)
        init = sch.decompose_reduction(acc, ako)
        sch.vectorize(sch.get_loops(init)[-1])
        if intrin is not None:
            sch.tensorize(ani, intrin)
    else:
        sch.reorder(ako, aki, am, ani)
        sch.unroll(aki)
        sch.unroll(am)
        sch.vectorize(ani)
        sch.decompose_reduction(acc, ako)
    return sch.mod["main"]

