"""ASGI WebSockets (FastAPI, Starlette, any ASGI app) on wsproto_core,
served by uvicorn: give uvicorn our protocol class and nothing else
changes.

    uvicorn app:app --ws adapters.asgi:WebSocketProtocol

Needs uvicorn (`pip install 'wsproto-core[asgi]'`); nothing outside this
package imports it.
"""

from .protocol import WebSocketProtocol

__all__ = ["WebSocketProtocol"]
