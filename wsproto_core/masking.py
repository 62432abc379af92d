"""The masking function, the hottest loop on both the client send path and
the server receive path.

A C accelerator is used when it was built; otherwise the pure-Python
version below. Both are importable by name so tests can compare them, and
setting WSPROTO_CORE_PURE_PYTHON=1 forces the fallback everywhere.
"""

from __future__ import annotations

import os
from typing import Protocol

Buffer = bytes | bytearray | memoryview


class MaskFunction(Protocol):
    def __call__(self, data: Buffer | str, mask: bytes, prefix: bytes = b"", /) -> bytes: ...


# Below this size one big-integer XOR beats four strided translate() calls.
_TRANSLATE_THRESHOLD = 4096
_xor_tables: list[bytes | None] = [None] * 256


def _xor_table(key: int) -> bytes:
    table = _xor_tables[key]
    if table is None:
        table = _xor_tables[key] = bytes(b ^ key for b in range(256))
    return table


def apply_mask_python(data: Buffer | str, mask: bytes, prefix: bytes = b"", /) -> bytes:
    """`prefix` + `data` XOR `mask` repeated; pure Python, no per-byte loop.

    An ASCII str is masked as its bytes (the accelerator reads it in place;
    here it is encoded first), and any other str refused with ValueError."""
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    if isinstance(data, str):
        if not data.isascii():
            raise ValueError("only ASCII text is masked without encoding")
        data = data.encode("ascii")
    size = len(data)
    if size < _TRANSLATE_THRESHOLD:
        repeated = (mask * ((size >> 2) + 1))[:size]
        value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
        return prefix + value.to_bytes(size, "little")
    source = bytes(data)
    out = bytearray(size)
    for phase in range(4):
        out[phase::4] = source[phase::4].translate(_xor_table(mask[phase]))
    return prefix + out


apply_mask_c: MaskFunction | None
try:
    from ._speedups import apply_mask as apply_mask_c
except ImportError:  # pragma: no cover - depends on whether a compiler was available
    apply_mask_c = None

apply_mask: MaskFunction
if apply_mask_c is None or os.environ.get("WSPROTO_CORE_PURE_PYTHON"):
    apply_mask = apply_mask_python
else:  # pragma: no cover - the compiled pass of the tests runs it (without coverage)
    apply_mask = apply_mask_c


def rotate(mask: bytes, phase: int) -> bytes:
    """The mask as seen from `phase` bytes into a payload."""
    return mask[phase:] + mask[:phase] if phase else mask
