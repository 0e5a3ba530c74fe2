"""What the two aarch64 families share: the schedule of the ternary linear, and 4x4 int8
dot-product tensor intrinsics whose accumulator lives in registers.

Why our own intrinsics: TVM's stock ARM ones (`tvm.s_tir.tensor_intrin.arm_cpu`) want the
accumulator in global memory, and importing that package costs ~40 s (it builds the SME
intrinsics), too slow for a test run. The instruction sequences are the usual ones: SDOT
(`llvm.aarch64.neon.sdot`) on ARMv8.2+dotprod, SMULL + SADDLP + ADDP on plain ARMv8.0 NEON.

Both families use int8 activations (act_offset=0): s8 x s8 is what SDOT/SMULL multiply, so no
+128 offset and no weight-sum compensation are needed (that trick is for x86 u8 x s8). Both
always take a bias (one kernel per shape, zeros for a layer without one) and have no knobs.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from edgeclip.errors import KernelError

from .family import KernelFamily
from .ternary import LinearShape, linear_prim_func

#: Output channels per packed weight tile; 4 dot-product instructions of 4 lanes each.
TILE_N = 16
LANES = 4  # int32 accumulators per instruction (one 128-bit vector)

DOT_4X4_SDOT = "edgeclip_dot_4x4_i8i8i32_sdot_local"
DOT_4X4_NEON = "edgeclip_dot_4x4_i8i8i32_neon_local"


@T.prim_func(s_tir=True)
def _dot_4x4_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (4,), "int8", offset_factor=1)
    B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        for i, k in T.grid(4, 4):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, k])
                C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vi, vk])


@T.prim_func(s_tir=True)
def _dot_4x4_sdot_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (4,), "int8", offset_factor=1)
    B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        # The 4 activations, as one int32 broadcast to all lanes: lane i gets dot(A, B[i, :]).
        a_x16 = T.reinterpret("int8x16", T.broadcast(T.reinterpret("int32", A.vload([0], "int8x4")), 4))
        C[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(
            "int32x4", "llvm.aarch64.neon.sdot.v4i32.v16i8",
            C.vload([0], "int32x4"), a_x16, B.vload([0, 0], "int8x16"),
        )


@T.prim_func(s_tir=True)
def _dot_4x4_neon_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (4,), "int8", offset_factor=1)
    B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        # Widening multiply of A (twice) by rows 0-1 and 2-3 of B, then pairwise adds:
        # 8 products -> 4 int32 pair sums per half -> addp gives the 4 row sums.
        a_x8 = T.reinterpret("int8x8", T.broadcast(T.reinterpret("int32", A.vload([0], "int8x4")), 2))
        b = B.vload([0, 0], "int8x16")
        low = T.call_llvm_pure_intrin(
            "int32x4", "llvm.aarch64.neon.saddlp.v4i32.v8i16",
            T.call_llvm_pure_intrin("int16x8", "llvm.aarch64.neon.smull.v8i16",
                                    a_x8, T.vectorlow("int8x8", b)),
        )
        high = T.call_llvm_pure_intrin(
            "int32x4", "llvm.aarch64.neon.saddlp.v4i32.v8i16",
            T.call_llvm_pure_intrin("int16x8", "llvm.aarch64.neon.smull.v8i16",
                                    a_x8, T.vectorhigh("int8x8", b)),
        )
        C[T.ramp(0, 1, 4)] = C.vload([0], "int32x4") + T.call_llvm_pure_intrin(
            "int32x4", "llvm.aarch64.neon.addp.v4i32", low, high
        )


TensorIntrin.register(DOT_4X4_SDOT, _dot_4x4_desc, _dot_4x4_sdot_impl, override=True)
TensorIntrin.register(DOT_4X4_NEON, _dot_4x4_desc, _dot_4x4_neon_impl, override=True)


def schedule_linear(family: KernelFamily, shape: LinearShape, dot_intrin: str) -> tirx.PrimFunc:
    """`linear_primfunc` of both aarch64 families: the shared ternary linear scheduled for aarch64.

    Loop nest: parallel over N tiles; each tile's weights are unpacked once to int8 and reused
    for every row m; per row, the tile's accumulators stay in registers across K. int8 mode
    tensorizes each 4x4 block with `dot_intrin`; fp32 mode adds/subtracts x by sign (select)
    in 16-wide vectors, never multiplying by a weight.
    """
    spec = family.spec(shape)
    if spec.tile_n != TILE_N:
        raise KernelError(f"the aarch64 schedule needs tile_n={TILE_N}, got {spec.tile_n}")
    sch = s_tir.Schedule(linear_prim_func(spec))
    y, acc, unpack = sch.get_sblock("y"), sch.get_sblock("acc"), sch.get_sblock("w_unpack")
    m, n = sch.get_loops(y)
    n_tile, n_lane = sch.split(n, [None, spec.tile_n])
    sch.reorder(n_tile, m, n_lane)
    sch.compute_at(acc, m)
    sch.set_scope(acc, 0, "local")
    sch.compute_at(unpack, n_tile)
    sch.parallel(n_tile)
    ni, ko, ki = sch.get_loops(acc)[-3:]
    if spec.act == "int8":
        ni_block, ni_lane = sch.split(ni, [None, LANES])
        sch.reorder(ko, ni_block, ni_lane, ki)
        sch.decompose_reduction(acc, ko)
        sch.tensorize(ni_lane, dot_intrin)
    else:
        sch.reorder(ko, ki, ni)
        sch.vectorize(ni)
        init = sch.decompose_reduction(acc, ko)
        sch.vectorize(sch.get_loops(init)[-1])
    if spec.N % spec.tile_n == 0:
        sch.vectorize(n_lane)
    return sch.mod["main"]
