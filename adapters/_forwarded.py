"""The client's address behind reverse proxies (`trusted_proxies`).

Behind a proxy every connection comes from the proxy's address, so a limit
per client address (`max_connections_per_ip`, the chat's rate limits) would
be one limit for everybody. A proxy names the address it served in
`X-Forwarded-For`, appending it to what the request already carried; anyone
can write that header, so only the entries added by proxies we trust are
believed: from the right, each entry is the client of the hop before it,
for as long as that hop is trusted. The first untrusted address met is the
client. An entry that is not an address stops the walk at the hop that
wrote it (which is trusted, so its clients share one limit rather than
choose their own).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 32  # entries looked at, from the right: a header of thousands costs nothing


def trusted_networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    """`proxies` as networks: "10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8".
    Raises ValueError for anything else, naming it."""
    if isinstance(proxies, str):
        raise ValueError(f"a list of addresses or networks, not one string: {proxies!r}")
    networks = []
    for proxy in proxies:
        try:
            networks.append(ipaddress.ip_network(proxy.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {proxy!r}") from None
    return tuple(networks)


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address of the client that `peer` (the TCP peer's IP) relays
    for, given the request's X-Forwarded-For fields in order, as the
    module's docstring says; `peer` itself when it is not trusted."""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [hop for value in forwarded_for for hop in value.rsplit(",", MAX_HOPS)]
    current = peer
    for hop in reversed(hops[-MAX_HOPS:]):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _is_trusted(current, trusted):
            break
    return current


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # (a dual-stack listener's view of an IPv4 proxy)
    return any(ip in network for network in trusted)


def _address(hop: str) -> str | None:
    """An X-Forwarded-For entry as a plain IP ("1.2.3.4", "[::1]:443" and
    "1.2.3.4:80" are accepted), or None."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        ip = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # (the same client as its IPv4 form)
    return str(ip)
