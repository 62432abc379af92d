from typing import Any

def apply_mask(
    data: bytes | bytearray | memoryview | str, mask: bytes, prefix: bytes = b"", /
) -> bytes: ...

class Constructor:
    """Constructor(cls, *fields)(*values): `cls` with its fields set, `__init__` skipped."""

    def __init__(self, cls: type, /, *fields: str) -> None: ...
    def __call__(self, *values: object) -> Any: ...
