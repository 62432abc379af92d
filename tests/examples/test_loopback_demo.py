"""The README's first command runs this demo; it must keep telling the truth."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "loopback_demo.py"


def test_demo_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("loopback_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    out = capsys.readouterr().out
    assert "handshake accepted, subprotocol 'chat.v1'" in out
    assert "text message 'Hello again'" in out
    assert "pong b'are you there?'" in out
    assert "connection failed with 1002: unmasked frame from a client" in out
    assert "server closes TCP first: True" in out
    assert "then the client: True" in out
