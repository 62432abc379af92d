"""What the chat's settings make of the server's options (`settings.py`)."""

from __future__ import annotations

from adapters.chat.settings import COMPRESSION, ChatSettings, server_options


def test_origins_option_overrides_the_policy() -> None:
    listed = server_options(ChatSettings(origins=("https://chat.example",)))
    assert listed["origins"] == ("https://chat.example",)
    assert callable(server_options(ChatSettings())["origins"])


def test_server_options() -> None:
    options = server_options(ChatSettings(max_message_size=1000, max_connections_per_ip=3))
    assert options["max_message_size"] == 1000
    assert options["max_connections_per_ip"] == 3
    assert options["compression"] is COMPRESSION
    assert options["reuse_port"] is False  # only workers share a port
    assert server_options(ChatSettings(workers=2, redis="redis://x"))["reuse_port"] is True
