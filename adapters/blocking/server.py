"""The blocking server: an accept loop and a thread per connection."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Unpack

from .._admission import (
    AcceptFailures,
    Admission,
    default_connection_cap,
    let_in,
    refuse_overloaded,
)
from .._common import ServerOptions, Settings
from .._driver import close_after_handler, server_policy
from .._listening import listen, no_delay
from .connection import WebSocket
from .tls import TLSWire

logger = logging.getLogger(__name__)
_now = time.monotonic
Handler = Callable[[WebSocket], None]


class Server:
    """A listening server; `serve_forever()` accepts until `close()`.

    Each connection costs one descriptor and two threads (its handler's
    and its reader), TLS or not, so
    unless `max_connections` says otherwise the server holds at most what
    the process's descriptor and thread limits allow
    (`adapters._admission.default_connection_cap`) and answers the excess
    with 503 at once, from the accept loop, without a thread."""

    def __init__(self, handler: Handler, host: str | None, port: int, settings: Settings) -> None:
        self.handler = handler
        self.settings = settings
        cap = settings.max_connections
        if cap is None:
            cap = default_connection_cap(threads_per_connection=2)
        self.admission = Admission(cap, settings.max_connections_per_ip, settings.stats)
        self.connections: set[WebSocket] = set()
        self._threads: set[threading.Thread] = set()
        self._listeners = listen(host, port, reuse_port=settings.reuse_port)
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._stopping = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        self._serving = False
        self._stopped = threading.Event()
        self._accept_failures = AcceptFailures(logger)

    @property
    def port(self) -> int:
        return int(self._listeners[0].getsockname()[1])

    def serve_forever(self) -> None:
        """Accept until `close()`. No failure of one connection, nor a
        lack of descriptors or threads, ends it (see `adapters._admission`)."""
        self._serving = True
        poller = select.poll()
        listeners = {listener.fileno(): listener for listener in self._listeners}
        for listener in self._listeners:
            poller.register(listener, select.POLLIN)
        poller.register(self._wakeup_r, select.POLLIN)
        failures = self._accept_failures
        try:
            while not self._stopping.is_set():
                ready = [fd for fd, _ in poller.poll()]
                if self._wakeup_r.fileno() in ready:  # close() was called
                    break
                try:
                    sock, address = listeners[ready[0]].accept()
                    sock.setblocking(True)  # not socket.getdefaulttimeout()'s timeout
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as error:
                    # Out of descriptors: the connection waits in the backlog.
                    # poll() would say "readable" at once, so wait instead.
                    self._stopping.wait(failures.failed(error))
                    continue
                if not let_in(self.admission, failures, sock.fileno()):
                    sock.close()
                    continue
                thread = threading.Thread(
                    target=self._serve_one, args=(sock, address), daemon=True, name="ws-conn"
                )
                self._threads.add(thread)  # before start: it removes itself when done
                try:
                    thread.start()
                except RuntimeError as error:  # can't start new thread
                    self._threads.discard(thread)
                    self.admission.depart()
                    refuse_overloaded(sock.fileno(), self.admission.stats)
                    sock.close()
                    failures.failed(error)
                    continue
                failures.accepted()
        finally:
            for listener in self._listeners:
                listener.close()
            self._stopped.set()

    def _serve_one(self, sock: socket.socket, address: Any) -> None:
        """One connection, from accept to close; whatever happens here ends
        this connection only."""
        ws: WebSocket | None = None
        try:
            ip = str(address[0])
            no_delay(sock)
            tls = None
            if self.settings.ssl is not None:
                tls = TLSWire(self.settings.ssl, server_side=True)
                tls.handshake(sock, self.settings.open_timeout)
            ws = WebSocket(
                sock,
                self.settings.new_server_core(),
                self.settings,
                on_request=server_policy(self.admission, ip),
                tls=tls,
            )
            ws.remote_address = address
            self.connections.add(ws)
            if ws._handshake():
                self._run_handler(ws)
        except OSError:  # (ssl.SSLError too) the peer went away, or was never quite there
            pass
        except Exception:
            logger.exception("connection failed")
        finally:
            if ws is not None:
                self.connections.discard(ws)
                if not ws._closed.is_set():
                    ws._abort()
                ws._driver.transport_closing()
            sock.close()
            self.admission.depart()
            self._threads.discard(threading.current_thread())

    def _run_handler(self, ws: WebSocket) -> None:
        try:
            self.handler(ws)
        except Exception as error:
            ws.close(*close_after_handler(error))
        else:
            ws.close()
        ws.wait_closed()

    def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection with `code` and wait for
        them (at most `close_timeout`). Calling it again waits for the first call."""
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
            self._shutdown(code, reason)

    def _shutdown(self, code: int, reason: str) -> None:
        self._stopping.set()
        if self._serving:
            self._wakeup_w.send(b"x")
            self._stopped.wait()
        else:
            for listener in self._listeners:
                listener.close()
        connections = list(self.connections)
        for ws in connections:
            ws.close_nowait(code, reason)
        wait = self.settings.shutdown_wait
        deadline = None if wait is None else _now() + wait

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - _now())

        for ws in connections:
            if not ws.wait_closed(remaining()):
                ws._abort()
        # Handlers that outlive their connection (a handler that ignores
        # the end) get what the last write after a close gets, then are left.
        last = (deadline or _now()) + self.settings.final_write_bound
        for thread in list(self._threads):
            thread.join(max(0.0, last - _now()))
        self._wakeup_r.close()
        self._wakeup_w.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    handler: Handler, host: str | None, port: int, **options: Unpack[ServerOptions]
) -> Server:
    """Create a listening server; run it with `serve_forever()`."""
    return Server(handler, host, port, Settings.of(options))
