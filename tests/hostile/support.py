"""Tools for the hostile suite: real server processes (with rlimits), raw
sockets with hand-built handshakes and frames, /proc readers, and the
legitimate client's check.

HOSTILE_SOURCE_ROOT picks the code the servers run (their cwd and
PYTHONPATH; default: this repository), so the same attacks can be aimed at
another checkout, such as the code before the fixes. HOSTILE_SCALE
multiplies the attacks' counts and durations for a longer soak.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import ConnectionClosed, HandshakeError, blocking

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = Path(os.environ.get("HOSTILE_SOURCE_ROOT") or REPO_ROOT).resolve()
SCALE = max(1.0, float(os.environ.get("HOSTILE_SCALE") or "1"))
BACKENDS = ("asyncio", "trio", "blocking")
LEGIT_DEADLINE = 1.0  # seconds for a newcomer to get in and be served, after an attack

Rlimits = dict[int, tuple[int, int]]


def scaled(count: float) -> int:
    return int(count * SCALE)


# -- /proc -------------------------------------------------------------------


def proc_status(pid: int, key: str) -> int:
    """A number from /proc/PID/status, such as VmRSS (KiB) or Threads."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def rss_kib(pid: int) -> int:
    return proc_status(pid, "VmRSS")


def vm_kib(pid: int) -> int:
    return proc_status(pid, "VmSize")


def thread_count(pid: int) -> int:
    return proc_status(pid, "Threads")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class RssSampler:
    """Samples a process's RSS every few milliseconds in a thread; `peak`
    is the largest seen (the attack's high-water mark, not just its end)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, rss_kib(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, AssertionError):
            self.peak = max(self.peak, rss_kib(self.pid))


# -- server processes --------------------------------------------------------


@dataclass
class Server:
    """A server process; its stderr is drained by a thread into `log`
    (a full pipe must not block a server that logs a lot)."""

    process: subprocess.Popen[bytes]
    kind: str  # "echo", "chat" or "asgi" (uvicorn)
    backend: str
    port: int
    _log: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/" + ("ws" if self.kind == "chat" else "")

    @property
    def log(self) -> str:
        with self._lock:
            return "".join(self._log)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def assert_alive(self) -> None:
        code = self.process.poll()
        assert code is None, (
            f"{self.kind} ({self.backend}) exited with {code}; its log ends:\n{self.log_tail()}"
        )

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def threads(self) -> int:
        return thread_count(self.pid)

    def fds(self) -> int:
        return fd_count(self.pid)

    def _drain(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                self._log.append(raw.decode("utf-8", "replace"))


def _spawn(
    command: list[str],
    env: dict[str, str] | None,
    rlimits: Rlimits | None,
    *,
    stdout: int,
) -> subprocess.Popen[bytes]:
    """A server process from SOURCE_ROOT, its stderr piped, under `rlimits`."""
    environment = dict(os.environ, PYTHONPATH=str(SOURCE_ROOT), PYTHONUNBUFFERED="1")
    environment.update(env or {})
    return subprocess.Popen(
        command,
        cwd=SOURCE_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        preexec_fn=_set_rlimits(rlimits) if rlimits else None,
    )


def _set_rlimits(limits: Rlimits) -> Callable[[], None]:
    def apply() -> None:
        for which, value in limits.items():
            resource.setrlimit(which, value)

    return apply


@contextmanager
def running(
    kind: str,
    backend: str,
    *args: str,
    rlimits: Rlimits | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start `python -m adapters.echo|chat` from SOURCE_ROOT on a free
    loopback port; stop it (SIGINT, then SIGKILL) after, by its PID."""
    module = {"echo": "adapters.echo", "chat": "adapters.chat"}[kind]
    command = [sys.executable, "-m", module, "--backend", backend, "--host", "127.0.0.1"]
    command += ["--port", "0", *args]
    process = _spawn(command, env, rlimits, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = process.stdout.readline().decode("utf-8", "replace")
        found = re.search(r"(?:ws|http)://127\.0\.0\.1:(\d+)/", line)
        if found is None:
            process.kill()
            raise AssertionError(
                f"{kind} ({backend}) did not start: {line!r} "
                f"{process.stderr.read().decode('utf-8', 'replace')[-2000:]}"
            )
        server = Server(process, kind, backend, int(found.group(1)))
        threading.Thread(target=server._drain, args=(process.stderr,), daemon=True).start()
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                # Clients an attack left hanging may hold a graceful shutdown
                # for close_timeout (10 s): that is not what is tested here.
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- uvicorn -----------------------------------------------------------------

ASGI_OURS = "adapters.asgi:WebSocketProtocol"
ASGI_APP = "tests.hostile.asgi_apps:app"
_UVICORN_STARTED = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@contextmanager
def running_uvicorn(
    ws: str = ASGI_OURS,
    *args: str,
    app: str = ASGI_APP,
    graceful: int | None = 1,
    rlimits: Rlimits | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`python -m uvicorn <app> --ws <ws> <args>` from SOURCE_ROOT on a free
    loopback port (its kind is "asgi", its backend the `--ws` class, its
    URL the app's echo route). uvicorn logs to stderr, where the port is
    read from its start line; stopped as `running` stops a server, with
    uvicorn's graceful shutdown cut to `graceful` seconds (None: uvicorn's
    default, no limit)."""
    command = [sys.executable, "-m", "uvicorn", app, "--ws", ws, "--host", "127.0.0.1"]
    command += ["--port", "0", *args]
    if graceful is not None:
        command += ["--timeout-graceful-shutdown", str(graceful)]
    process = _spawn(command, env, rlimits, stdout=subprocess.DEVNULL)
    try:
        assert process.stderr is not None
        early: list[str] = []
        port = None
        while port is None:
            line = process.stderr.readline().decode("utf-8", "replace")
            if not line:
                process.kill()
                raise AssertionError(f"uvicorn ({ws}) did not start: {''.join(early)[-2000:]}")
            early.append(line)
            found = _UVICORN_STARTED.search(line)
            if found is not None:
                port = int(found.group(1))
        server = Server(process, "asgi", ws, port, _log=early)
        threading.Thread(target=server._drain, args=(process.stderr,), daemon=True).start()
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def live_objects(server: Server) -> dict[str, int]:
    """An ASGI server's `GET /live` (tests/hostile/asgi_apps.py): its live
    per-connection objects and tasks, after a full collection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:200]
    return json.loads(body)  # type: ignore[no-any-return]


# -- raw sockets -------------------------------------------------------------

KEY = base64.b64encode(b"hostile-suite-16").decode()


def upgrade_request(
    port: int,
    path: str = "/",
    *,
    host: str | None = None,
    origin: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """An RFC 6455 opening request, offering no extension (so the server's
    frames are plain)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bytes = b"\x37\xfa\x21\x3d",
    rsv1: bool = False,
) -> bytes:
    """A masked (client) frame; `rsv1` marks a permessage-deflate message's
    first frame. A mask of four zero bytes leaves the payload as it is (and
    skips the slow masking loop, for large payloads)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    if not any(mask):
        return head + mask + payload
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + masked


def deflated(data: bytes, repeat: int = 1) -> bytes:
    """`data` repeated `repeat` times, as one permessage-deflate message's
    payload (RFC 7692 section 7.2.1: a raw deflate stream, sync-flushed,
    without its last 4 bytes). A bomb: `deflated(bytes(1 << 20), 256)` is
    about 256 KiB that inflates to 256 MiB (never held here whole)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [compressor.compress(data) for _ in range(repeat)]
    out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    stream = b"".join(out)
    assert stream.endswith(b"\x00\x00\xff\xff")
    return stream[:-4]


def text_frame(text: str) -> bytes:
    return frame(0x1, text.encode("utf-8", "surrogatepass"))


def close_frame(code: int = 1000) -> bytes:
    return frame(0x8, struct.pack("!H", code))


def one_byte_fragments(data: bytes, opcode: int = 0x2) -> bytes:
    """`data` as len(data) masked frames of one byte each: built once, by
    slicing into a repeated 7-byte template (header, mask, payload)."""
    count = len(data)
    mask = b"\x5a\xc3\x0f\x96"
    template = bytes([0x00, 0x81]) + mask + b"\x00"
    out = bytearray(template * count)
    out[0] = opcode  # the first frame opens the message, not final
    out[(count - 1) * 7] = 0x80  # the last continuation is final
    out[6::7] = bytes(b ^ mask[0] for b in data) if count < 1024 else _xor_all(data, mask[0])
    return bytes(out)


def _xor_all(data: bytes, key: int) -> bytes:
    table = bytes(b ^ key for b in range(256))
    return data.translate(table)


def connect_raw(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source != "127.0.0.1":
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def abort(sock: socket.socket) -> None:
    """Reset a socket that other threads may be blocked on: shutdown wakes
    them (close alone would not), then the RST."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    reset(sock)


def read_response_head(sock: socket.socket) -> tuple[int, bytes]:
    """(status, head) of the server's answer to an opening request; frames
    that follow it stay in the socket (we read byte by byte up to the blank
    line)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
        assert len(head) < 65536, head[:200]
    match = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return (int(match.group(1)) if match else 0), head


def handshake_raw(
    port: int, path: str = "/", source: str = "127.0.0.1", **options: Any
) -> socket.socket:
    sock = connect_raw(port, source)
    sock.sendall(upgrade_request(port, path, **options))
    status, head = read_response_head(sock)
    assert status == 101, head
    return sock


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 20))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket) -> tuple[bool, int, bytes]:
    """(fin, opcode, payload) of one unmasked (server) frame."""
    b0, b1 = recv_exact(sock, 2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", recv_exact(sock, 8))
    payload = recv_exact(sock, length) if length else b""
    return bool(b0 & 0x80), b0 & 0x0F, payload


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next data message (pings are skipped) or of
    a close frame (opcode 8)."""
    parts: list[bytes] = []
    opcode = 0
    while True:
        fin, op, payload = read_frame(sock)
        if op == 0x8:
            return op, payload
        if op in (0x9, 0xA):
            continue
        if op:
            opcode = op
        parts.append(payload)
        if fin:
            return opcode, b"".join(parts)


# -- the legitimate client ---------------------------------------------------


def legit_echo(server: Server, deadline: float = LEGIT_DEADLINE) -> float:
    """A newcomer (from 127.0.0.1) connects and gets its message echoed,
    within `deadline` seconds, retrying in that window if refused; returns
    the seconds it took."""
    return _within(deadline, lambda left: _echo_once(server.url, left), server)


def _echo_once(url: str, left: float) -> None:
    ws = blocking.connect(url, open_timeout=left, close_timeout=1.0)
    try:
        ws.send("hello after the storm")
        assert ws.recv(timeout=left) == "hello after the storm"
    finally:
        ws.close_nowait()


def legit_chat(server: Server, deadline: float = LEGIT_DEADLINE, nick: str = "newcomer") -> float:
    """A newcomer joins the chat and sees its own message broadcast, within
    `deadline` seconds; returns the seconds it took."""
    return _within(deadline, lambda left: _chat_once(server.url, left, nick), server)


def _chat_once(url: str, left: float, nick: str) -> None:
    start = time.monotonic()

    def remaining() -> float:
        return max(0.01, left - (time.monotonic() - start))

    ws = blocking.connect(url, open_timeout=left, close_timeout=1.0)
    try:
        welcome = json.loads(ws.recv(timeout=remaining()))
        assert welcome["type"] == "welcome", welcome
        ws.send(json.dumps({"type": "join", "nick": nick}))
        ws.send(json.dumps({"type": "message", "text": "hello after the storm"}))
        while True:
            event = json.loads(ws.recv(timeout=remaining()))
            assert event["type"] != "error", event
            if event["type"] == "message" and event["text"] == "hello after the storm":
                assert event["nick"] == nick, event
                return
    finally:
        ws.close_nowait()


def _within(deadline: float, attempt: Callable[[float], None], server: Server) -> float:
    start = time.monotonic()
    errors: list[str] = []
    while True:
        left = deadline - (time.monotonic() - start)
        if left <= 0:
            break
        try:
            attempt(left)
        except (OSError, TimeoutError, HandshakeError, ConnectionClosed) as error:
            errors.append(f"{type(error).__name__}: {error}")
            time.sleep(0.02)
            continue
        return time.monotonic() - start
    server.assert_alive()
    raise AssertionError(
        f"no legitimate client got in within {deadline} s: {errors[-3:]} "
        f"({len(errors)} attempts); the server's log ends:\n{server.log_tail(15)}"
    )


# -- a chat client reading events as dicts -----------------------------------


class Member:
    """A chat client on the project's blocking adapter."""

    def __init__(self, url: str, **options: Any) -> None:
        options.setdefault("compression", None)
        options.setdefault("close_timeout", 2.0)
        self.ws = blocking.connect(url, **options)
        self.welcome = self.next()
        assert self.welcome["type"] == "welcome", self.welcome

    def send(self, **event: Any) -> None:
        self.ws.send(json.dumps(event))

    def send_raw(self, text: str) -> None:
        self.ws.send(text)

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))  # type: ignore[no-any-return]

    def next_of(self, kind: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event

    def answer(self) -> dict[str, Any]:
        """The next event that is not news of the room (presence, others'
        messages): the answer to what we sent."""
        while True:
            event = self.next()
            if event["type"] not in ("presence", "message"):
                return event

    def join(self, nick: str) -> dict[str, Any]:
        """Join; returns the `you` or the `error` that answers it."""
        self.send(type="join", nick=nick)
        while True:
            event = self.next()
            if event["type"] in ("you", "error"):
                return event

    def close(self) -> None:
        with contextlib.suppress(OSError, ConnectionClosed):
            self.ws.close_nowait()


# -- the checks after every attack -------------------------------------------

RSS_SLACK_MIB = 32  # what an attack may add to a server's RSS, unless a test says otherwise


@contextmanager
def attacked(
    server: Server,
    legit: Callable[[Server], float],
    *,
    allowed_mib: float = RSS_SLACK_MIB,
    interval: float = 0.02,
) -> Iterator[RssSampler]:
    """Around an attack: a first legitimate client (which also loads what
    serving one needs) and the baseline RSS before; RSS sampled during;
    after it, (1) the server is alive, (2) a new legitimate client gets in
    and is served within LEGIT_DEADLINE, (3) the peak RSS stayed within
    baseline + `allowed_mib`."""
    legit(server)
    base = server.rss_kib()
    with RssSampler(server.pid, interval) as sampler:
        yield sampler
        server.assert_alive()
        legit(server)
    server.assert_alive()
    growth = (sampler.peak - base) / 1024
    assert growth <= allowed_mib, (
        f"RSS grew by {growth:.1f} MiB (from {base / 1024:.1f} to {sampler.peak / 1024:.1f}), "
        f"over the {allowed_mib} MiB allowed"
    )
