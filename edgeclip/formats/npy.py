""".npy files that come from somewhere else (a board's `embed --out`): the header is parsed and the
shape, dtype and total size checked before the data is trusted or written anywhere.

Standard library only: the remote layer, which never loads numpy, checks what it fetches.
"""

from __future__ import annotations

import ast

MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 64 << 10
FLOAT32 = "<f4"


class NpyError(ValueError):
    """The bytes are not the .npy that was expected (the caller says where they came from)."""


def max_matrix_bytes(rows: int, cols: int, itemsize: int = 4) -> int:
    """The most bytes a [rows, cols] .npy can take: what may be fetched before checking it."""
    return 12 + MAX_HEADER_BYTES + rows * cols * itemsize


def check_matrix(data: bytes, rows: int, cols: int, dtype: str = FLOAT32) -> None:
    """Refuse `data` unless it is exactly a C-order `dtype` [rows, cols] array and nothing more."""
    start, end = _header_span(data)
    try:
        header = ast.literal_eval(data[start:end].decode("latin-1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise NpyError(f"its header is not a Python dict literal ({err})") from err
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpyError(f"its header is not {{descr, fortran_order, shape}}: {str(header)[:200]}")
    if header["descr"] != dtype or header["fortran_order"] is not False:
        raise NpyError(f"it holds {header['descr']!r} (Fortran order {header['fortran_order']}), not C-order {dtype!r}")
    if header["shape"] != (rows, cols):
        raise NpyError(f"its shape is {header['shape']}, not ({rows}, {cols})")
    size = end + rows * cols * int(dtype[2:])
    if len(data) != size:
        raise NpyError(f"it is {len(data)} bytes, not the {size} its header says")


def _header_span(data: bytes) -> tuple[int, int]:
    """Where the header dict starts and ends (versions 1.0: 2-byte length; 2.0 and 3.0: 4-byte)."""
    if len(data) < 10 or data[:6] != MAGIC:
        raise NpyError("it does not start with the .npy magic")
    major = data[6]
    if major == 1:
        start = 10
    elif major in (2, 3) and len(data) >= 12:
        start = 12
    else:
        raise NpyError(f"format version {major} is not 1, 2 or 3")
    length = int.from_bytes(data[8:start], "little")
    if length > MAX_HEADER_BYTES or start + length > len(data):
        raise NpyError(f"its header length {length} is over the limit of {MAX_HEADER_BYTES} or past the end")
    return start, start + length
