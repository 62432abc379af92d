"""TLS for the blocking backend as bytes in, bytes out (`ssl.MemoryBIO`).

Why not `ssl.SSLSocket`: an SSL socket cannot be written without blocking
while another thread reads it, so a broadcast (`send_prepared`, which must
never wait) to a TLS peer needed a writer thread per peer. With the TLS
state machine in memory, every connection's socket is a plain socket to
every thread: the same non-blocking writes and the same housekeeper serve
TLS and plain connections alike, one threading model for both.

Records must reach the wire in the order the TLS object makes them (each
carries a sequence number), whoever makes them: a sender encrypting, or the
reader whose decryption produced a record of its own (a TLS 1.3 key update
answer). So every record made goes into one queue, under this object's
lock, and writers take from that queue, in order, under their write lock.
The lock is a leaf: nothing else is taken while it is held.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
import threading
import time

READ_SIZE = 64 * 1024


class TLSWire:
    """One connection's TLS, in memory."""

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._lock = threading.Lock()
        self._records: list[bytes] = []  # made, not yet taken by a writer
        self.queued = 0  # bytes in _records

    def handshake(self, sock: socket.socket, timeout: float | None) -> None:
        """Run the TLS handshake over `sock` (blocking, in the caller's
        thread); raises OSError (TimeoutError past `timeout`) or
        ssl.SSLError on failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while True:
            with self._lock:
                try:
                    self._tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                pending = self._outgoing.read()
            if pending:
                sock.sendall(pending)
            if done:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("TLS handshake timed out")
            if not poller.poll(None if left is None else math.ceil(left * 1000)):
                raise TimeoutError("TLS handshake timed out")
            data = sock.recv(READ_SIZE)
            if not data:
                raise ConnectionResetError("connection closed during the TLS handshake")
            with self._lock:
                self._incoming.write(data)

    def encrypt(self, chunks: list[bytes]) -> list[bytes]:
        """Records for `chunks`, after any record made before them: what
        to write now, in order (the caller holds its write lock)."""
        with self._lock:
            for chunk in chunks:
                self._tls.write(chunk)
            made = self._outgoing.read()
            records, self._records = self._records, []
            self.queued = 0
        if made:
            records.append(made)
        return records

    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        """The plaintext in `data` (which may hold part of a record, then
        none), and whether the peer closed TLS. Records this made (rarely
        any) wait in the queue for the next writer: see `has_records`.
        Raises ssl.SSLError on a corrupt record."""
        parts: list[bytes] = []
        closed = False
        with self._lock:
            self._incoming.write(data)
            while True:
                try:
                    part = self._tls.read(READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    closed = True
                    break
                except ssl.SSLError:
                    if not parts:
                        raise
                    closed = True  # what came before the corrupt record still counts
                    break
                if not part:
                    closed = True
                    break
                parts.append(part)
            made = self._outgoing.read()
            if made:
                self._records.append(made)
                self.queued += len(made)
        return b"".join(parts), closed

    @property
    def has_records(self) -> bool:
        """Records wait for a writer (see `decrypt`)."""
        return bool(self._records)
