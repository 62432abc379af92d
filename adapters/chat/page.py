"""The chat's page: GET / and its two files, served from the package by
the WebSocket server's HTTP handler, with headers that allow nothing but
our own files."""

from __future__ import annotations

from importlib import resources

from wsproto_core import HttpRequest

from .. import HttpResponse

_PAGE_FILES = {
    "/": ("chat.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = [
    # Only our own files; the socket back to the same host. Even if text
    # were inserted as HTML, an inline handler would not run.
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


def page(request: HttpRequest) -> HttpResponse:
    """GET / and its two files, from the package; 404 for anything else."""
    found = _PAGE_FILES.get(request.path)
    if request.method not in ("GET", "HEAD") or found is None:
        return HttpResponse(status=404, headers=[("Content-Type", "text/plain")], body=b"no\n")
    name, kind = found
    body = resources.files(__package__).joinpath(name).read_bytes()
    headers = [("Content-Type", kind), ("Cache-Control", "no-cache"), *_SECURITY_HEADERS]
    return HttpResponse(status=200, headers=headers, body=body)
