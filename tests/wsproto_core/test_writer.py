"""Frame serialization: headers, masks, and the mask pool."""

from __future__ import annotations

from wsproto_core.writer import FrameWriter, frame_bytes


def test_unmasked_header_encodings() -> None:
    out: list[bytes] = []
    writer = FrameWriter(mask=False, out=out)
    writer.write(0x1, b"Hello")
    writer.write(0x2, bytes(256))
    writer.write(0x2, bytes(65536), fin=False, rsv=0x40)
    assert out[0] == bytes.fromhex("810548656c6c6f")
    assert out[1][:4] == bytes.fromhex("827e0100")
    assert out[2] == bytes.fromhex("427f0000000000010000")  # header alone: payload follows
    assert len(out[3]) == 65536


def test_masked_frames_use_fresh_masks_across_pool_refills() -> None:
    out: list[bytes] = []
    writer = FrameWriter(mask=True, out=out)
    for _ in range(2100):  # more than two pools of 1,024 masks
        writer.write(0x2, b"\x00\x00\x00\x00")
    masks = [frame[2:6] for frame in out]
    assert all(frame[1] == 0x84 for frame in out)
    assert all(frame[6:] == frame[2:6] for frame in out)  # zeros XOR mask = mask
    assert len(set(masks)) > 2000  # random 32-bit masks: collisions are rare


def test_large_non_bytes_payload_is_copied_into_bytes() -> None:
    out: list[bytes] = []
    FrameWriter(mask=False, out=out).write(0x2, bytearray(5000))
    assert type(out[1]) is bytes


def test_frame_bytes_uses_each_length_encoding() -> None:
    for size, header in [(5, "8205"), (256, "827e0100"), (65536, "827f0000000000010000")]:
        assert frame_bytes(0x2, bytes(size)) == bytes.fromhex(header) + bytes(size)


def test_payloads_from_4096_bytes_on_are_queued_apart_without_a_copy() -> None:
    """For `chunks_to_send`: a large payload reaches the transport as is."""
    out: list[bytes] = []
    writer = FrameWriter(mask=False, out=out)
    small, large = bytes(4095), bytes(4096)
    writer.write(0x2, small)
    writer.write(0x2, large)
    assert out[0] == bytes.fromhex("827e0fff") + small
    assert out[1:] == [bytes.fromhex("827e1000"), large]
    assert out[2] is large
