"""CUDA family (sm_87: Jetson Orin's Ampere GPU) of the ternary linear.

One thread per output channel n and a tile of up to 8 rows m: per group of 4 k it unpacks the 4
weights to registers once and reuses them for every row of its tile. int8 mode multiplies each
4-element group with `__dp4a` (s8 x s8 -> s32, so int8 activations: act_offset=0); fp32 mode
adds/subtracts x by the weight's sign. Jetson Nano (sm_53) is older than CUDA 13 can target; it
runs the ARMv8.0 NEON family on its Cortex-A57 instead.

Whole-model lowering uses it for `--device cuda` (`edgeclip.lower.target`): the GPU target comes
from a board TOML's [tvm.gpu] table (jetson-orin-nano's sm_87, or cuda-host's `--cuda-arch`).
The kernel itself is not tied to sm_87: dp4a exists from sm_61 on.
"""

from __future__ import annotations

import numpy as np
from tvm import s_tir, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from .family import KernelFamily
from .ternary import LinearShape, linear_prim_func

__all__ = ["FAMILY", "linear_primfunc", "pack_weights"]

_THREADS = 64  # output channels per block
_ROWS_PER_THREAD = 8  # upper bound on the rows m sharing one unpacked weight group
_DP4A_LOCAL = "edgeclip_dp4a_s8s8s32_local"

#: tile_n is only a layout choice here: each thread owns one channel.
FAMILY = KernelFamily("cuda", tile_n=16, act_offset=0, always_bias=True, target_kind="cuda")


@T.prim_func(s_tir=True)
def _dp4a_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (4,), "int8", offset_factor=1)
    B = T.match_buffer(b, (4,), "int8", offset_factor=1, scope="local")
    C = T.match_buffer(c, (1,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0], A[0:4], B[0:4])
        T.writes(C[0])
        for k in range(4):
            with T.sblock("update"):
                vk = T.axis.remap("R", [k])
                C[0] = C[0] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vk])


@T.prim_func(s_tir=True)
def _dp4a_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (4,), "int8", offset_factor=1)
    B = T.match_buffer(b, (4,), "int8", offset_factor=1, scope="local")
    C = T.match_buffer(c, (1,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0], A[0:4], B[0:4])
        T.writes(C[0])
        C[0] = T.call_pure_extern(
            "int32", "__dp4a",
            T.reinterpret("int32", A.vload([0], "int8x4")), T.reinterpret("int32", B.vload([0], "int8x4")), C[0],
        )


TensorIntrin.register(_DP4A_LOCAL, _dp4a_desc, _dp4a_impl, override=True)


def _rows_per_thread(M: int) -> int:
    """Largest row tile that divides M (a ragged tile would put a predicate on the dp4a)."""
    return next(r for r in range(min(M, _ROWS_PER_THREAD), 0, -1) if M % r == 0)


def _bind_elementwise(sch: s_tir.Schedule, block: str) -> None:
    fused = sch.fuse(*sch.get_loops(sch.get_sblock(block)))
    bx, tx = sch.split(fused, [None, 128])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")


def linear_primfunc(spec: LinearShape, threads: int) -> tirx.PrimFunc:
    """Scheduled PrimFunc `ternary_linear(x, w_packed, scale, bias, y)` (see ternary.py);
    `threads` (CPU threads) changes nothing on a GPU."""
    sch = s_tir.Schedule(linear_prim_func(FAMILY.spec(spec)))
    y, acc, unpack = sch.get_sblock("y"), sch.get_sblock("acc"), sch.get_sblock("w_unpack")
    rows = _rows_per_thread(spec.M)
    m, n = sch.get_loops(y)
    m_tile, m_row = sch.split(m, [None, rows])
    n_block, n_thread = sch.split(n, [None, _THREADS])
    sch.reorder(m_tile, n_block, n_thread, m_row)
    sch.bind(m_tile, "blockIdx.y")
    sch.bind(n_block, "blockIdx.x")
    sch.bind(n_thread, "threadIdx.x")
    sch.compute_at(acc, n_thread)
    sch.set_scope(acc, 0, "local")
    *acc_m, ko, ki = sch.get_loops(acc)[3:]  # below the 3 bound loops; no row loop when rows == 1
    if acc_m:
        sch.reorder(ko, acc_m[0], ki)
    sch.compute_at(unpack, ko)
    sch.set_scope(unpack, 0, "local")
    sch.decompose_reduction(acc, ko)
    if spec.act == "int8":
        sch.tensorize(ki, _DP4A_LOCAL)
        _bind_elementwise(sch, "x_quant")
        bx, tx = sch.split(sch.get_loops(sch.get_sblock("x_absmax"))[0], [None, 32])  # a thread per row
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
    else:
        sch.unroll(ki)
    return sch.mod["main"]


def pack_weights(trits: np.ndarray, act: str) -> list[np.ndarray]:
    """Weight operands in parameter order: [w_packed] (dp4a is s8 x s8: no weight sums)."""
    return FAMILY.weight_operands(trits, act)
