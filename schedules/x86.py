"""Schedule shared by the x86-64 families; `x86_avx2` and `x86_avx512` differ only in their
`FAMILY` descriptor: the tile width and the register-blocked micro-kernel (`BlockKernel`).

Loop nest of the int8 linear:

    x_absmax, x_quant            at root, once per call (quantization fused in the PrimFunc)
    for nt in groups of `vecs` N tiles (parallel when threads > 1):
        acc[Mp, vecs, tile_n] = 0                       int32, on the stack
        for kc in chunks of `kgroups` k-groups (4 k each):
            w_unpack[vecs, kgroups]  2-bit -> int8, once per chunk (L1-sized), reused by every row
            for rb in row blocks of `rows`:
                micro-kernel: rows x vecs register accumulators over the chunk, then added to acc
        y[:, tile] = rescale(acc)                       vectorized epilogue

The micro-kernel is one tensorized block per (rows, vecs, kgroups): each activation broadcast
feeds `vecs` products and each weight vector `rows` products, and the accumulators stay in
registers for the whole chunk (AVX2 keeps them in int16, which bounds `kgroups`). M is padded
to a multiple of the family's row block (`LinearSpec.row_block`) so every block is full and
predicate-free.

rows / vecs / kgroups are the schedule's knobs (`Knobs`): `default_knobs` is the hand choice,
`knob_choices` every value the kernel is correct for on a shape (any `rows` whose padded row
count fits in Mp, whole N tiles, whole packed bytes within the overflow bound), which is the
space `edgeclip tune --kernels` searches (`edgeclip.lower.knobs`).

The GEMM is `compute_at` into the tiled output (reverse_compute_at is refused while the
quantization producers sit at root).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from tvm import s_tir, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from edgeclip.errors import KernelError

from .family import KernelFamily
from .ternary import K_GROUP, LinearShape, LinearSpec, linear_prim_func, round_up


@dataclass(frozen=True)
class BlockKernel:
    """What a family plugs into the shared micro-kernel.

    step(acc, x4, w) -> acc: one k-group for one (row, vector): `x4` is the row's 4 activation
    bytes as an int32, `w` the int8 vector of lanes x 4 weights; `acc` has `acc_dtype`.
    finish(acc) -> int32 x lanes, added to the int32 accumulator after each chunk.
    """

    name: str
    lanes: int  # output channels per vector (= the family's tile_n)
    acc_dtype: str  # vector type of the register accumulator, e.g. "int16x16"
    max_kgroups: int  # k-groups a chunk may hold before the register accumulator could overflow
    rows: int  # row block (register blocking along M)
    vecs: int  # N vectors per row block (register blocking along N)
    step: Callable
    finish: Callable


def _block_desc(rows: int, vecs: int, lanes: int, kgroups: int):
    """Semantics: C[r, v, i] += sum_{kb, k} u8 A[r, 4 kb + k] * s8 B[v, kb, i, k]."""

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sb = T.int32()
        sc0 = T.int32()
        sc1 = T.int32()
        A = T.match_buffer(a, (rows, kgroups * K_GROUP), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (vecs, kgroups, lanes, K_GROUP), "int8", offset_factor=1,
                           strides=[sb, lanes * K_GROUP, K_GROUP, 1])
        C = T.match_buffer(c, (rows, vecs, lanes), "int32", offset_factor=1, strides=[sc0, sc1, 1], scope="local")
        with T.sblock("root"):
            T.reads(C[0:rows, 0:vecs, 0:lanes], A[0:rows, 0:kgroups * K_GROUP], B[0:vecs, 0:kgroups, 0:lanes, 0:K_GROUP])
            T.writes(C[0:rows, 0:vecs, 0:lanes])
            for r, v, i, kb, k in T.grid(rows, vecs, lanes, kgroups, K_GROUP):
                with T.sblock("update"):
                    # unit loops lose their block iterator when the schedule is blockized
                    if rows > 1:
                        vr = T.axis.spatial(rows, r)
                    else:
                        vr = T.meta_var(0)
                    if vecs > 1:
                        vv = T.axis.spatial(vecs, v)
                    else:
                        vv = T.meta_var(0)
                    vi, vkb, vk = T.axis.remap("SRR", [i, kb, k])
                    C[vr, vv, vi] = C[vr, vv, vi] + T.Cast("int32", A[vr, vkb * K_GROUP + vk]) * T.Cast(
                        "int32", B[vv, vkb, vi, vk])

    return desc


def _block_impl(kernel: BlockKernel, kgroups: int):
    rows, vecs, lanes = kernel.rows, kernel.vecs, kernel.lanes
    acc_lanes = int(kernel.acc_dtype.split("x")[1])
    w_dtype = f"int8x{lanes * K_GROUP}"

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sb = T.int32()
        sc0 = T.int32()
        sc1 = T.int32()
        A = T.match_buffer(a, (rows, kgroups * K_GROUP), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (vecs, kgroups, lanes, K_GROUP), "int8", offset_factor=1,
                           strides=[sb, lanes * K_GROUP, K_GROUP, 1])
        C = T.match_buffer(c, (rows, vecs, lanes), "int32", offset_factor=1, strides=[sc0, sc1, 1], scope="local")
        with T.sblock("root"):
            T.reads(C[0:rows, 0:vecs, 0:lanes], A[0:rows, 0:kgroups * K_GROUP], B[0:vecs, 0:kgroups, 0:lanes, 0:K_GROUP])
            T.writes(C[0:rows, 0:vecs, 0:lanes])
            acc = T.alloc_buffer((rows, vecs, acc_lanes), kernel.acc_dtype.split("x")[0], scope="local")
            for r in T.unroll(rows):
                for v in T.unroll(vecs):
                    acc[r, v, T.ramp(0, 1, acc_lanes)] = T.broadcast(T.Cast(kernel.acc_dtype.split("x")[0], 0), acc_lanes)
            for kb in T.serial(kgroups):
                for r in T.unroll(rows):
                    x4 = T.reinterpret(A.vload([r, kb * K_GROUP], "uint8x4"), dtype="int32")
                    for v in T.unroll(vecs):
                        acc[r, v, T.ramp(0, 1, acc_lanes)] = kernel.step(
                            acc.vload([r, v, 0], kernel.acc_dtype), x4, B.vload([v, kb, 0, 0], w_dtype))
            for r in T.unroll(rows):
                for v in T.unroll(vecs):
                    C[r, v, T.ramp(0, 1, lanes)] = C.vload([r, v, 0], f"int32x{lanes}") + kernel.finish(
                        acc.vload([r, v, 0], kernel.acc_dtype))

    return impl


def block_intrin(kernel: BlockKernel, kgroups: int) -> str:
    """Register the micro-kernel for one chunk length, once per process."""
    name = f"{kernel.name}_{kernel.rows}x{kernel.vecs}x{kgroups}"
    try:
        TensorIntrin.get(name)
    except Exception:  # noqa: BLE001 - TVM raises a generic error for unknown names
        TensorIntrin.register(name, _block_desc(kernel.rows, kernel.vecs, kernel.lanes, kgroups),
                              _block_impl(kernel, kgroups))
    return name


def chunk_kgroups(k_groups: int, limit: int) -> int:
    """Largest multiple of 4 k-groups (one packed byte row) that divides K and fits `limit`."""
    return max(c for c in range(4, min(k_groups, limit) + 1, 4) if k_groups % c == 0)


def vecs_for(n_tiles: int, preferred: int) -> int:
    return max(v for v in range(1, preferred + 1) if n_tiles % v == 0)


@dataclass(frozen=True)
class Knobs:
    """The register blocking of the int8 linear: `rows` x `vecs` accumulators per micro-kernel
    call, over chunks of `kgroups` k-groups (4 k each) of unpacked weights."""

    rows: int
    vecs: int
    kgroups: int


def default_knobs(spec: LinearSpec, kernel: BlockKernel) -> Knobs:
    """The hand choice: the family's register block, clipped to what the shape allows."""
    return Knobs(spec.row_block, vecs_for(spec.Np // spec.tile_n, kernel.vecs),
                 chunk_kgroups(spec.Kp // K_GROUP, kernel.max_kgroups))


def knob_choices(spec: LinearSpec, kernel: BlockKernel) -> dict[str, list[int]]:
    """Every value of each knob the kernel is correct for on `spec` (a tuner samples these).

    rows: the row loop is split by `rows`, so its padded extent must stay inside the Mp rows the
    quantized activations have (spec.row_block fixes Mp); vecs: whole N tiles per block; kgroups:
    whole packed bytes (multiples of 4) dividing K, within the family's overflow bound. Register
    pressure bounds rows x vecs by the hand design's accumulator count (more would spill).
    """
    budget = kernel.rows * kernel.vecs
    n_tiles, k_groups = spec.Np // spec.tile_n, spec.Kp // K_GROUP
    return {
        "rows": [r for r in range(1, budget + 1) if round_up(spec.M, r) <= spec.Mp],
        "vecs": [v for v in range(1, budget + 1) if n_tiles % v == 0],
        "kgroups": [c for c in range(4, min(k_groups, kernel.max_kgroups) + 1, 4) if k_groups % c == 0],
    }


def check_knobs(spec: LinearSpec, kernel: BlockKernel, knobs: Knobs) -> None:
    """Refuse knobs outside `knob_choices` (a wrong block would read past the padded rows)."""
    choices = knob_choices(spec, kernel)
    bad = [f"{name}={getattr(knobs, name)}" for name, allowed in choices.items() if getattr(knobs, name) not in allowed]
    if bad or knobs.rows * knobs.vecs > kernel.rows * kernel.vecs:
        raise KernelError(f"knobs {', '.join(bad) or knobs} are not valid for the {spec.M}x{spec.K}->{spec.N} "
                          f"{kernel.name} kernel; allowed: {choices} with rows x vecs <= {kernel.rows * kernel.vecs}")


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


def schedule_int8(spec: LinearSpec, kernel: BlockKernel, threads: int = 1, knobs: Knobs | None = None) -> tirx.PrimFunc:
    """Register-blocked int8 linear (see the module docstring); `knobs` default to the hand choice."""
    sch = s_tir.Schedule(linear_prim_func(spec))
    apply_int8(sch, spec, kernel, threads, knobs or default_knobs(spec, kernel))
    return sch.mod["main"]


def apply_int8(sch: s_tir.Schedule, spec: LinearSpec, kernel: BlockKernel, threads: int, knobs: Knobs) -> None:
    """Schedule the unscheduled linear held by `sch` in place (a tuner passes a traced schedule)."""
    check_knobs(spec, kernel, knobs)
    tn, rows, vecs, kgroups = spec.tile_n, knobs.rows, knobs.vecs, knobs.kgroups
    y = sch.get_sblock("y")
    m, n = sch.get_loops(y)
    nt, n_in = sch.split(n, [None, vecs * tn])
    sch.split(m, [None, rows])  # the padded row loop bounds the rows compute_at gives acc
    sch.reorder(nt, *sch.get_loops(y)[:2], n_in)
    acc = sch.get_sblock("acc")
    sch.compute_at(acc, nt, preserve_unit_loops=True)
    sch.set_scope(acc, 0, "local")
    am, ano, ani, ako, aki = sch.get_loops(acc)[-5:]
    kc, kb = sch.split(ako, [None, kgroups])
    rb, r = sch.split(am, [None, rows])
    sch.reorder(kc, rb, r, ano, ani, kb, aki)
    if spec.packed:
        unpack = sch.get_sblock("w_unpack")
        sch.compute_at(unpack, kc, preserve_unit_loops=True)
        uko, u_ni, u_ki = sch.get_loops(unpack)[-3:]
        sch.unroll(sch.split(uko, [None, 4])[1])  # one shift amount per unrolled copy
        sch.vectorize(sch.fuse(u_ni, u_ki))
    _schedule_quantization(sch, spec)
    if threads > 1:
        sch.parallel(nt)
    sch.vectorize(sch.split(sch.get_loops(y)[-1], [None, tn])[1])
    init = sch.decompose_reduction(acc, kc)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(r, block_intrin(replace(kernel, rows=rows, vecs=vecs), kgroups))


def schedule_fp32(spec: LinearSpec, threads: int = 1) -> tirx.PrimFunc:
    """fp32 activations: sign applied by select + add in `tile_n`-wide vectors (no multiply)."""
    sch = s_tir.Schedule(linear_prim_func(spec))
    tn, rows = spec.tile_n, max(b for b in range(1, 7) if spec.M % b == 0)
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
    uko, _, u_ni = sch.get_loops(sch.get_sblock("w_unpack"))[-3:]
    sch.unroll(sch.split(uko, [None, 4])[1])
    sch.vectorize(u_ni)
    if threads > 1:
        sch.parallel(yno)
    sch.vectorize(yni)
    sch.reorder(ako, aki, am, ani)
    sch.unroll(aki)
    sch.unroll(am)
    sch.vectorize(ani)
    sch.decompose_reduction(acc, ako)
    return sch.mod["main"]


def rows_for(M: int, most: int) -> int:
    """Row block for M: M itself when small, else the block in [most - 2, most] that pads M
    least (ties: the larger block, fewer broadcasts per product)."""
    if M <= most:
        return M
    return min(range(most, max(most - 3, 0), -1), key=lambda r: round_up(M, r))


def linear_spec(family: KernelFamily, shape: LinearShape, packed: bool = True) -> LinearSpec:
    """The linear as an x86 family computes it: int8 mode pads M to the micro-kernel's row block."""
    if shape.act == "int8":
        return family.spec(shape, row_block=rows_for(shape.M, family.micro_kernel.rows), packed=packed)
    return family.spec(shape)


def schedule_linear(family: KernelFamily, shape: LinearShape, threads: int, packed: bool = True,
                    knobs: Knobs | None = None) -> tirx.PrimFunc:
    """`linear_primfunc` of both x86 families: the int8 micro-kernel schedule or the fp32 one.
    packed=False (int8 only) builds the same kernel reading unpacked int8 weights (baseline);
    `knobs` (int8 only) replace the hand register blocking, e.g. with tuned ones."""
    spec = linear_spec(family, shape, packed)
    if shape.act == "int8":
        return schedule_int8(spec, family.micro_kernel, threads, knobs)
    return schedule_fp32(spec, threads)
