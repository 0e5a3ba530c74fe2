"""JSON from untrusted files, parsed within bounds: a size cap before parsing, no NaN or Infinity
(the standard library accepts them), and a nesting cap (deep nesting otherwise ends in a
RecursionError, or a walker's stack overflow later). Each format wraps the ValueError in its own
layer's error. Standard library only.
"""

from __future__ import annotations

import json

MAX_DEPTH = 32


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_bounded(data: bytes, max_bytes: int, max_depth: int = MAX_DEPTH):
    """The JSON value `data` holds; ValueError (one line, starting "is ...") when it is too big, too
    deep or invalid."""
    if len(data) > max_bytes:
        raise ValueError(f"is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"is nested more than {max_depth} levels deep") from None
    except ValueError as err:  # bad syntax or UTF-8, NaN/Infinity, an integer of over 4300 digits
        raise ValueError(f"is not valid JSON ({' '.join(str(err).split())})") from err
    if depth(value, max_depth) > max_depth:
        raise ValueError(f"is nested more than {max_depth} levels deep")
    return value


def depth(value, cap: int) -> int:
    """Nesting depth of a parsed JSON value, counted without recursion and stopping past `cap`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > cap:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
