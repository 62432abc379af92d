"""The mask function: the C accelerator and the pure-Python fallback must
agree with a byte-by-byte reference, on every size class."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_core import masking

IMPLEMENTATIONS: list[masking.MaskFunction] = [masking.apply_mask_python]
if masking.apply_mask_c is not None:
    IMPLEMENTATIONS.append(masking.apply_mask_c)


def reference(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_the_accelerator_in_use_is_the_one_expected() -> None:
    """Where the test command found a C compiler (WSPROTO_CORE_EXPECT_COMPILED)
    the C extension must have been built: else the build silently fell back
    and every benchmark number would be wrong. WSPROTO_CORE_PURE_PYTHON=1
    must give the Python one."""
    if os.environ.get("WSPROTO_CORE_EXPECT_COMPILED"):
        assert masking.apply_mask_c is not None
    if os.environ.get("WSPROTO_CORE_PURE_PYTHON"):
        assert masking.apply_mask is masking.apply_mask_python
    else:
        assert masking.apply_mask is (masking.apply_mask_c or masking.apply_mask_python)


@pytest.mark.parametrize("apply", IMPLEMENTATIONS)
def test_rfc_example(apply: Callable[[bytes, bytes], bytes]) -> None:
    assert apply(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


@pytest.mark.parametrize("apply", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 4095, 4096, 4097, 100_003])
def test_every_size_class(apply: Callable[[bytes, bytes], bytes], size: int) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    mask = b"\x01\x80\xfe\x7f"
    assert apply(data, mask) == reference(data, mask)
    assert apply(memoryview(data), mask) == reference(data, mask)
    assert apply(bytearray(data), mask) == reference(data, mask)


@pytest.mark.parametrize("apply", IMPLEMENTATIONS)
@given(data=st.binary(max_size=9000), mask=st.binary(min_size=4, max_size=4))
def test_masking_twice_is_identity(
    apply: Callable[[bytes, bytes], bytes], data: bytes, mask: bytes
) -> None:
    assert apply(data, mask) == reference(data, mask)
    assert apply(apply(data, mask), mask) == data


@pytest.mark.parametrize("apply", IMPLEMENTATIONS)
def test_mask_must_be_four_bytes(apply: Callable[[bytes, bytes], bytes]) -> None:
    with pytest.raises(ValueError, match=r"^mask must be 4 bytes$"):
        apply(b"data", b"abc")


@pytest.mark.parametrize("apply", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [0, 5, 5000])
def test_prefix_is_written_before_the_masked_data(apply: masking.MaskFunction, size: int) -> None:
    data, mask = bytes(range(256)) * (size // 256) + bytes(size % 256), b"\x10\x20\x30\x40"
    assert apply(data, mask, b"head") == b"head" + reference(data, mask)
    assert type(apply(data, mask, b"head")) is bytes


def test_rotate_continues_the_mask_mid_payload() -> None:
    data, mask = bytes(range(50)), b"abcd"
    whole = reference(data, mask)
    for cut in range(len(data)):
        head = reference(data[:cut], mask)
        tail = masking.apply_mask_python(data[cut:], masking.rotate(mask, cut % 4))
        assert head + tail == whole


@pytest.mark.parametrize("apply", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 4095, 4096, 4097, 100_003])
def test_ascii_text_is_masked_as_its_bytes(apply: masking.MaskFunction, size: int) -> None:
    """A client's text is masked straight from the str (no encoded copy)."""
    text = "".join(chr(32 + (i * 7) % 95) for i in range(size))
    mask = b"\x01\x80\xfe\x7f"
    assert apply(text, mask) == reference(text.encode(), mask)
    assert apply(text, mask, b"head") == b"head" + reference(text.encode(), mask)


@pytest.mark.parametrize("apply", IMPLEMENTATIONS)
@pytest.mark.parametrize("text", ["é", "x" * 100 + "\u20ac", "\U0001f600"])
def test_other_text_is_refused(apply: masking.MaskFunction, text: str) -> None:
    """Its bytes would be its UTF-8 encoding, whose length the frame header
    could not know from len(str): the caller must encode it first."""
    with pytest.raises(ValueError, match="only ASCII text"):
        apply(text, b"abcd")
