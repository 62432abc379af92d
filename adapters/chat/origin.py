"""Which pages may open the chat's WebSocket: the default Origin policy,
which lets in the page's own origin and keeps out other sites, DNS
rebinding included."""

from __future__ import annotations

import ipaddress

from wsproto_core import HandshakeRequest

from .._common import OriginCheck


def origin_policy(host: str) -> OriginCheck:
    """The default Origin policy (without --origins) of a server bound to
    `host` (--host).

    A browser always sends an Origin, which is what stops another site's
    page from talking to the chat in its visitors' name; a request without
    one is not from a browser and is let in (such a client could send any
    Origin anyway).

    With an Origin, two things must hold:

    1. the Origin is http:// or https:// followed by exactly the Host the
       browser connected to (same scheme-less authority, port included):
       the page that opened the socket came from this very server, or
       from whatever forwards to it on that host and port;
    2. the Host's name is one that cannot be DNS rebinding: an IP literal,
       `localhost` (browsers resolve it to loopback themselves), or the
       name given as --host. Rebinding needs a name the attacker controls
       (a page at evil.example whose DNS then points at 127.0.0.1 sends
       `Origin: http://evil.example:8000` with `Host: evil.example:8000`,
       which passes the first rule but not this one).

    The port is not compared with the one bound: the first rule already
    pins it to the port the browser reached, which also keeps --port 0 and
    forwarded ports (containers, SSH tunnels) working. A server reached by
    a DNS name other than --host (`--host 0.0.0.0` behind chat.example)
    lists its origins with --origins.
    """
    named = _hostname(host)

    def check(request: HandshakeRequest) -> bool:
        origin = request.origin
        if origin is None:
            return True
        authority = request.host.strip().lower()
        if origin.lower() not in (f"http://{authority}", f"https://{authority}"):
            return False
        name = _authority_name(authority)
        return name is not None and (name in ("localhost", named) or _is_ip(name))

    return check


def _hostname(host: str) -> str | None:
    """--host as a name to allow, or None for a wildcard ("", 0.0.0.0, ::)
    or an IP (IPs are allowed anyway)."""
    name = host.strip().strip("[]").lower()
    if not name or _is_ip(name):
        return None
    return name


def _authority_name(authority: str) -> str | None:
    """The host name of a Host header value ("name", "name:port",
    "[v6]:port"), or None if it is not one."""
    if authority.startswith("["):
        name, bracket, rest = authority[1:].partition("]")
        if not bracket or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return name if _is_ip(name) else None
    name, colon, port = authority.partition(":")
    if colon and not port.isdigit():
        return None
    return name or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
