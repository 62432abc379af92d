"""Handshake helpers: the RFC's accept-key example and key generation."""

from __future__ import annotations

import base64

from wsproto_core.handshake import accept_token, make_key

from .wire import RFC_ACCEPT, RFC_KEY


def test_rfc_accept_token() -> None:
    assert accept_token(RFC_KEY) == RFC_ACCEPT


def test_keys_are_16_random_bytes() -> None:
    keys = [make_key() for _ in range(50)]
    assert all(len(base64.b64decode(k, validate=True)) == 16 for k in keys)
    assert len(set(keys)) == 50
