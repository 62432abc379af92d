"""permessage-deflate negotiation (RFC 7692 sections 5 and 7.1), both roles."""

from __future__ import annotations

import pytest

from wsproto_core import (
    ClientConnection,
    HandshakeFailed,
    PerMessageDeflate,
    ServerConnection,
    State,
)
from wsproto_core.deflate import Agreement, client_agreement, client_offers, server_agreement
from wsproto_core.errors import HandshakeViolation
from wsproto_core.extensions import ExtensionOffer, format_extension, parse_extensions

from .wire import upgrade_request


def offers(header: str) -> tuple[ExtensionOffer, ...]:
    return parse_extensions([header])


def response_text(header: str, settings: PerMessageDeflate | None = None) -> str | None:
    negotiated = server_agreement(offers(header), settings or PerMessageDeflate())
    return None if negotiated is None else format_extension(negotiated[0])


# -- settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_bits": 8},
        {"window_bits": 16},
        {"peer_window_bits": 8},
        {"peer_window_bits": 16},
        {"level": 10},
        {"level": -1},
        {"mem_level": 0},
        {"mem_level": 10},
        {"min_size": -1},
    ],
)
def test_settings_out_of_range_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PerMessageDeflate(**kwargs)  # type: ignore[arg-type]


def test_compression_option_must_be_settings() -> None:
    with pytest.raises(TypeError, match="PerMessageDeflate"):
        ServerConnection(compression=True)  # type: ignore[typeddict-item]


# -- the client's offers ----------------------------------------------------


def test_default_offer_asks_for_a_small_server_window_with_a_fallback() -> None:
    text = ", ".join(format_extension(o) for o in client_offers(PerMessageDeflate()))
    assert text == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12, "
        "permessage-deflate; client_max_window_bits=12"
    )


def test_offer_with_every_parameter() -> None:
    settings = PerMessageDeflate(
        window_bits=10,
        peer_window_bits=None,
        no_context_takeover=True,
        peer_no_context_takeover=True,
    )
    [offer] = client_offers(settings)
    assert format_extension(offer) == (
        "permessage-deflate; server_no_context_takeover; "
        "client_max_window_bits=10; client_no_context_takeover"
    )


# -- the server's choice ----------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        # The server always names its own window when it is below 15.
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        (
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=12; server_no_context_takeover",
        ),
        # A client's own no-context-takeover is only a hint: the answer makes
        # it binding, since not every client keeps to its hint.
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=12; client_no_context_takeover",
        ),
        # Quoted values are the same values (RFC 7692 section 7.1).
        (
            'permessage-deflate; client_max_window_bits="11"',
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=11",
        ),
    ],
)
def test_server_answers_each_parameter(offer: str, expected: str) -> None:
    assert response_text(offer) == expected


def test_server_with_rfc_defaults_says_nothing_it_need_not() -> None:
    settings = PerMessageDeflate(window_bits=15, peer_window_bits=None)
    assert response_text("permessage-deflate; client_max_window_bits", settings) == (
        "permessage-deflate"
    )


def test_server_names_the_window_it_was_asked_for_even_at_15() -> None:
    """An offer's server_max_window_bits is always answered, even when the
    answer is the RFC's default of 15."""
    settings = PerMessageDeflate(window_bits=15)
    assert response_text("permessage-deflate; server_max_window_bits=15", settings) == (
        "permessage-deflate; server_max_window_bits=15"
    )
    assert response_text("permessage-deflate", settings) == "permessage-deflate"


def test_server_asks_for_its_own_and_the_clients_no_context_takeover() -> None:
    settings = PerMessageDeflate(no_context_takeover=True, peer_no_context_takeover=True)
    negotiated = server_agreement(offers("permessage-deflate"), settings)
    assert negotiated is not None
    response, agreement = negotiated
    assert format_extension(response) == (
        "permessage-deflate; server_max_window_bits=12; "
        "server_no_context_takeover; client_no_context_takeover"
    )
    assert agreement == Agreement(
        send_window_bits=12, receive_window_bits=15, reset_send=True, reset_receive=True
    )


@pytest.mark.parametrize(
    "bad",
    [
        "permessage-deflate; foo",  # unknown parameter
        "permessage-deflate; client_max_window_bits; client_max_window_bits",  # repeated
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=016",  # leading zero
        "permessage-deflate; client_max_window_bits=1x",
        "permessage-deflate; client_max_window_bits=09",  # leading zero, in range
        "permessage-deflate; server_no_context_takeover=1",  # a flag with a value
        "permessage-deflate; client_no_context_takeover=yes",
    ],
)
def test_server_declines_an_invalid_offer_and_takes_the_next(bad: str) -> None:
    assert response_text(bad) is None
    assert response_text(f"{bad}, permessage-deflate; server_max_window_bits=10") == (
        "permessage-deflate; server_max_window_bits=10"
    )


def test_server_ignores_other_extensions() -> None:
    assert response_text("x-webkit-deflate-frame, permessage-deflate") == (
        "permessage-deflate; server_max_window_bits=12"
    )
    assert response_text("x-webkit-deflate-frame") is None


def test_server_handshake_with_only_invalid_offers_opens_without_compression() -> None:
    server = ServerConnection(compression=PerMessageDeflate())
    server.receive_data(
        upgrade_request(extra=(("Sec-WebSocket-Extensions", "permessage-deflate; x=1"),))
    )
    server.accept()
    response = server.data_to_send()
    assert response.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Extensions" not in response
    assert server.extensions == ()


def test_server_without_compression_accepts_no_extension() -> None:
    server = ServerConnection()
    server.receive_data(
        upgrade_request(extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),))
    )
    server.accept()
    assert b"Sec-WebSocket-Extensions" not in server.data_to_send()


# -- the client's check of the response -------------------------------------


def check(response: str, settings: PerMessageDeflate | None = None) -> Agreement | None:
    return client_agreement(offers(response), settings or PerMessageDeflate())


def test_client_reads_the_agreement() -> None:
    assert check("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9") == (
        Agreement(send_window_bits=9, receive_window_bits=10, reset_send=False, reset_receive=False)
    )
    # Without limits: the server uses up to 15, we keep our own 12.
    assert check("permessage-deflate") == Agreement(
        send_window_bits=12, receive_window_bits=15, reset_send=False, reset_receive=False
    )
    assert check(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    ) == Agreement(send_window_bits=12, receive_window_bits=15, reset_send=True, reset_receive=True)


def test_client_without_a_deflate_answer_has_no_agreement() -> None:
    assert client_agreement((), PerMessageDeflate()) is None


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("permessage-deflate, permessage-deflate", "server accepted permessage-deflate twice"),
        ("permessage-deflate; foo", "unknown permessage-deflate parameter 'foo'"),
        (
            "permessage-deflate; client_max_window_bits",
            "client_max_window_bits needs a value",
        ),
        (
            "permessage-deflate; server_max_window_bits=20",
            "server_max_window_bits=20 is outside 8-15",
        ),
        (
            "permessage-deflate; server_max_window_bits=09",
            "server_max_window_bits='09' is not a window size",
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "server_no_context_takeover repeated in the permessage-deflate response",
        ),
        (
            "permessage-deflate; client_no_context_takeover=1",
            "client_no_context_takeover takes no value",
        ),
    ],
)
def test_client_refuses_an_invalid_response(response: str, reason: str) -> None:
    """The status is the response's own (101), as for every other fault of
    an accepting response."""
    with pytest.raises(HandshakeViolation) as caught:
        check(response)
    assert (caught.value.status, caught.value.reason) == (101, reason)


def test_client_refuses_a_server_that_ignores_its_no_context_takeover_request() -> None:
    with pytest.raises(HandshakeViolation) as caught:
        check("permessage-deflate", PerMessageDeflate(peer_no_context_takeover=True))
    assert (caught.value.status, caught.value.reason) == (
        101,
        "server ignored our server_no_context_takeover",
    )


def client_after_response(extension_header: str) -> tuple[ClientConnection, list[object]]:
    client = ClientConnection("server.example.com", compression=PerMessageDeflate())
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    server.accept(extra_headers=[("Sec-WebSocket-Extensions", extension_header)])
    return client, list(client.receive_data(server.data_to_send()))


def test_client_fails_the_handshake_on_an_invalid_response_without_raising() -> None:
    client, events = client_after_response("permessage-deflate; client_max_window_bits=99")
    [failed] = events
    assert failed == HandshakeFailed(status=101, reason="client_max_window_bits=99 is outside 8-15")
    assert client.state is State.CLOSED
    assert client.should_close_transport


def test_client_and_server_agree_end_to_end() -> None:
    client, events = client_after_response("permessage-deflate; server_max_window_bits=11")
    assert client.state is State.OPEN
    assert [format_extension(e) for e in client.extensions] == [
        "permessage-deflate; server_max_window_bits=11"
    ]
    assert len(events) == 1
