"""`trusted_proxies`: X-Forwarded-For is believed from trusted proxies
only, from the right, and a server counts `max_connections_per_ip` per
forwarded client (against real servers on loopback)."""

from __future__ import annotations

import pytest

from adapters import HandshakeError
from adapters._forwarded import MAX_HOPS, client_address, trusted_networks

from .harness import BACKENDS, client, running_server

TRUSTED = trusted_networks(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("192.0.2.1", ["198.51.100.7"], "192.0.2.1"),  # not a proxy: the header is anyone's
        ("10.0.0.1", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.1", [], "10.0.0.1"),  # a proxy that said nothing: its own address
        ("10.0.0.1", ["203.0.113.5, 198.51.100.7"], "198.51.100.7"),  # the left is the client's
        ("10.0.0.1", ["203.0.113.5", "198.51.100.7, 10.0.0.2"], "198.51.100.7"),  # two proxies
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all trusted: the farthest
        ("10.0.0.1", ["198.51.100.7, junk"], "10.0.0.1"),  # its proxy wrote junk: stop there
        ("10.0.0.1", ["1.2.3.4, junk, 10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", [" [2001:db8::1]:443 "], "2001:db8::1"),
        ("10.0.0.1", ["198.51.100.7:5000"], "198.51.100.7"),
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
        ("::ffff:10.0.0.1", ["198.51.100.7"], "198.51.100.7"),  # a dual-stack listener's view
        ("unknown", ["198.51.100.7"], "unknown"),
        ("10.0.0.1", ["::ffff:198.51.100.7"], "198.51.100.7"),  # one client, one key
    ],
)
def test_client_address(peer: str, forwarded_for: list[str], client: str) -> None:
    assert client_address(peer, forwarded_for, TRUSTED) == client


def test_one_string_is_not_a_list_of_proxies() -> None:
    with pytest.raises(ValueError, match="not one string"):
        trusted_networks("10.0.0.1")


def test_nothing_is_believed_without_trusted_proxies() -> None:
    assert client_address("127.0.0.1", ["198.51.100.7"], ()) == "127.0.0.1"


def test_a_huge_header_is_read_from_the_right_and_only_so_far() -> None:
    hops = ["10.0.0.9"] * (10 * MAX_HOPS)
    hops[0] = "198.51.100.7"  # beyond MAX_HOPS: never reached
    assert client_address("10.0.0.1", [", ".join(hops)], TRUSTED) == "10.0.0.9"


@pytest.mark.parametrize("bad", ["example.com", "10.0.0.0/33", "", "1.2.3.4/8/8"])
def test_trusted_networks_names_what_is_wrong(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        trusted_networks([bad])


def via_proxy(address: str) -> dict[str, object]:
    return {"extra_headers": [("X-Forwarded-For", address)]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_per_address_limit_counts_forwarded_clients(backend: str) -> None:
    options = {"max_connections_per_ip": 1, "trusted_proxies": ["127.0.0.1"]}
    with running_server(backend, **options) as server:
        url = server.url()
        first = client("blocking", url, **via_proxy("198.51.100.1"))
        second = client("blocking", url, **via_proxy("198.51.100.2"))
        with first as one, second as two:
            one.send("a")
            two.send("b")
            assert (one.recv(), two.recv()) == ("a", "b")
            third = client("blocking", url, **via_proxy("198.51.100.1"))
            with pytest.raises(HandshakeError) as caught, third:
                pass
            assert caught.value.status == 503


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_untrusted_peer_cannot_pick_its_address(backend: str) -> None:
    with running_server(backend, max_connections_per_ip=1) as server:
        url = server.url()
        with client("blocking", url, **via_proxy("198.51.100.1")):
            other = client("blocking", url, **via_proxy("198.51.100.2"))
            with pytest.raises(HandshakeError) as caught, other:
                pass
            assert caught.value.status == 503


def test_a_bad_trusted_proxy_is_refused_when_serving() -> None:
    server = running_server("asyncio", trusted_proxies=["proxy.example"])
    with pytest.raises(ValueError, match="not an IP address or network"), server:
        pass
