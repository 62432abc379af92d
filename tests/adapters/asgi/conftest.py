"""The uvicorn servers the ASGI tests share: one per app, loop and HTTP
parser pairing below, started once for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import Uvicorn, uvicorn

# (the app, then uvicorn's options): both frameworks, both loops, and both
# of uvicorn's HTTP parsers, which hand the upgrade over each its own way.
SERVED = {
    "starlette-asyncio-httptools": ("starlette_app", "--loop", "asyncio", "--http", "httptools"),
    "fastapi-uvloop-h11": ("fastapi_app", "--loop", "uvloop", "--http", "h11"),
}


@pytest.fixture(scope="session", params=list(SERVED))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Uvicorn]:
    app, *options = SERVED[request.param]
    with uvicorn(tmp_path_factory.mktemp(request.param), app, *options) as server:
        yield server


@pytest.fixture(scope="session")
def starlette(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uvicorn]:
    """The default pairing, for what does not depend on it."""
    app, *options = SERVED["starlette-asyncio-httptools"]
    with uvicorn(tmp_path_factory.mktemp("starlette"), app, *options) as server:
        yield server
