"""The connection policy every backend shares (adapters/_driver.py), tested
with no sockets: bytes in, wake flags and bytes out."""

from __future__ import annotations

import sys
import tracemalloc

import pytest

from adapters import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK, HandshakeError
from adapters._admission import Admission
from adapters._common import READ_SIZE, HttpResponse, Settings, WebSocketURI, new_client_core
from adapters._driver import (
    INFLATION,
    MIN_SLICE,
    QUEUE_BYTES_PER_SLOT,
    CloseStep,
    Driver,
    Reassembly,
    Wake,
    answer_handshake,
    close_after_handler,
    server_policy,
)
from wsproto_core import (
    BytesFragment,
    ClientConnection,
    HandshakeRequest,
    HttpRequest,
    LocalProtocolError,
    PerMessageDeflate,
    PreparedMessage,
    ServerConnection,
    State,
    TextFragment,
)

from ..wsproto_core.wire import frame, one_byte_frames, open_server, upgrade_request


def open_driver(**options: object) -> Driver:
    settings = Settings.of(options)  # type: ignore[arg-type]
    return Driver(open_server(**settings.core_options()), settings)


def server_driver(
    admission: Admission | None = None, **options: object
) -> tuple[Driver, Admission]:
    settings = Settings.of(options)  # type: ignore[arg-type]
    admission = admission or Admission(None, None)
    driver = Driver(
        settings.new_server_core(),
        settings,
        on_request=lambda d, request: answer_handshake(d, request, admission, "10.0.0.1"),
    )
    return driver, admission


def text(data: str, *, fin: bool = True) -> bytes:
    return frame(0x1, data.encode(), fin=fin)


# -- receiving ------------------------------------------------------------------


def test_a_message_wakes_the_receiver_and_is_taken_whole() -> None:
    driver = open_driver()
    assert driver.received(text("hel", fin=False), 0.0) == Wake.MESSAGES
    assert driver.take_message() is None  # half a message: wait
    assert driver.received(frame(0x0, b"lo"), 0.0) == Wake.MESSAGES
    assert driver.take_message() == "hello"
    assert driver.take_message() is None
    assert not driver.is_over()


def test_an_idle_connection_keeps_no_queue_of_its_own() -> None:
    """The receive queue exists while fragments wait, and is dropped once
    they are all taken, by either way of taking (an empty deque is some
    600 bytes, which every idle connection would keep)."""
    idle, driver = open_driver(), open_driver()
    assert driver.fragments is idle.fragments
    driver.received(text("a") + text("b"), 0.0)
    assert driver.fragments is not idle.fragments
    assert len(driver.fragments) == 2
    assert driver.take_message() == "a"
    assert driver.fragments is not idle.fragments  # "b" still waits in it
    assert driver.take_message() == "b"
    assert driver.fragments is idle.fragments
    driver.received(text("c", fin=False) + frame(0x0, b"d"), 0.0)
    assert driver.take_message() == "cd"  # (fragment by fragment)
    assert driver.fragments is idle.fragments
    assert not idle.fragments


def test_the_request_policy_is_let_go_once_the_handshake_is_done() -> None:
    """A server's policy is a closure per connection (its address, its
    admission), needed only until the request is answered."""
    driver, _ = server_driver()
    assert driver._on_request is not None
    driver.received(upgrade_request(), 0.0)
    assert driver.opened
    assert driver._on_request is None


def test_reading_pauses_at_max_queue_and_resumes_at_half() -> None:
    driver = open_driver(max_queue=4)
    for n in range(4):
        assert driver.wants_data, n
        driver.received(text(str(n)), 0.0)
    assert not driver.wants_data
    assert driver.take_message() == "0"
    assert not driver.wants_data  # 3 left: more than half of 4
    assert driver.take_message() == "1"
    assert driver.wants_data  # 2 left: half
    driver.received(text("4") + text("5"), 0.0)
    assert not driver.wants_data


def test_reading_also_pauses_on_the_bytes_waiting() -> None:
    driver = open_driver(max_queue=16)  # 16 x 64 KiB: 1 MiB
    big = b"x" * (600 << 10)
    driver.received(frame(0x2, big), 0.0)
    assert driver.wants_data
    driver.received(frame(0x2, big), 0.0)
    assert not driver.wants_data  # two fragments, but 1.2 MiB
    assert driver.take_message() == big
    assert not driver.wants_data  # 600 KiB left: more than half
    assert driver.take_message() == big
    assert driver.wants_data
    assert driver.resumed


def compressed_driver(**options: object) -> tuple[Driver, ClientConnection]:
    """A server driver and a client core with permessage-deflate agreed."""
    driver, _ = server_driver(**options)
    client = ClientConnection(
        "example.com", "/", compression=PerMessageDeflate(), max_message_size=None
    )
    driver.received(client.data_to_send(), 0.0)
    client.receive_data(b"".join(driver.output()[0]))
    assert client.state is State.OPEN
    assert driver.core.extensions
    return driver, client


def test_deflate_bombs_in_one_read_inflate_only_within_the_budget() -> None:
    """One read of 40 messages of 4 MiB of zeros (about 4 KiB each on the
    wire): the queue never holds much more than its budget (256 KiB at
    max_queue=4) plus one slice's worth, and every message still arrives,
    whole, as the application takes them."""
    driver, client = compressed_driver(max_queue=4, max_message_size=4 << 20)
    message = bytes(4 << 20)
    for _ in range(40):
        client.send_bytes(message)
    flood = client.data_to_send()
    assert len(flood) < 40 * 8 * 1024
    driver.received(flood, 0.0)
    bound = 4 * QUEUE_BYTES_PER_SLOT + 2 * MIN_SLICE * INFLATION
    delivered = 0
    while delivered < 40:
        # (the message being joined is the application's, up to max_message_size)
        assert sum(len(f.data) for f in driver.fragments) <= bound
        assert driver.unfed or delivered > 30  # the rest of the read waits, compressed
        got = driver.take_message()
        if got is None:
            assert driver.unfed
            driver.received(b"", 0.0)  # what a backend does once reading may resume
            continue
        assert got == message
        delivered += 1
        if driver.resumed:
            driver.resumed = False
            driver.received(b"", 0.0)
    assert not driver.unfed


def bombs(count: int, size: int = 4 << 20) -> tuple[Driver, bytes]:
    driver, client = compressed_driver(max_queue=4, max_message_size=size)
    for n in range(count):
        client.send_bytes(bytes(size - 1) + bytes([n]))
    client.close(1000, "bye")
    return driver, client.data_to_send()


@pytest.mark.parametrize("ending", ["eof", "transport_lost"])
def test_an_end_that_comes_with_unfed_input_waits_for_it(ending: str) -> None:
    """A TLS layer hands over data and its end together (and asyncio's
    closes the transport right after): what was read still reaches the
    application, in slices as it takes, and the close frame in it counts."""
    driver, wire = bombs(10)
    driver.received(wire, 0.0)
    assert driver.unfed
    getattr(driver, ending)(1.0)
    assert driver.core.state is State.OPEN  # the end waits for the input before it
    got = []
    while True:
        message = driver.take_message()
        # Nothing to take must mean nothing waits: a backend then waits for
        # a wake-up that, once the transport is gone, never comes.
        assert message is not None or not driver.fragments
        if driver.resumed:  # what a backend does once reading may resume
            driver.resumed = False
            if not driver.gone:  # (once it is, taking feeds the rest itself)
                driver.received(b"", 2.0)
        if message is not None:
            got.append(message)
        elif not driver.fragments:
            break
    assert [m[-1] for m in got] == list(range(10))
    assert not driver.unfed
    assert driver.close_code == 1000
    assert driver.core.close_reason == "bye"


def test_after_drop_messages_compressed_input_is_still_inflated_in_slices() -> None:
    driver, wire = bombs(20)
    driver.start_close(1000, "")
    driver.drop_messages()
    tracemalloc.start()
    try:
        driver.received(wire, 0.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20  # 20 x 4 MiB inflated at once would be 80 MiB
    assert driver.wants_data
    assert not driver.unfed
    assert driver.core.state is State.CLOSED  # the close frame behind them was read


def test_early_compressed_frames_are_read_in_slices_too() -> None:
    """Bombs sent right behind the request, before the answer, are read
    after the accept the same way (the core leaves them unread)."""
    _, sender = compressed_driver()  # a client with deflate agreed, to make frames
    for _ in range(10):
        sender.send_bytes(bytes(4 << 20))
    bombs = sender.data_to_send()
    settings = Settings.of({"max_queue": 4, "max_message_size": 4 << 20})
    driver = Driver(settings.new_server_core(), settings, on_request=lambda d, r: None)
    client = ClientConnection("example.com", "/", compression=PerMessageDeflate())
    driver.received(client.data_to_send() + bombs, 0.0)  # one read
    core = driver.core
    assert isinstance(core, ServerConnection)
    wake = driver.accepted(core.accept(read_early=False), 0.0)
    assert wake & Wake.OPENED
    assert wake & Wake.MESSAGES
    assert sum(len(f.data) for f in driver.fragments) <= (
        4 * QUEUE_BYTES_PER_SLOT + 2 * MIN_SLICE * INFLATION
    )
    assert driver.unfed  # the rest waits, compressed
    assert not driver.wants_data


def test_pongs_owed_past_write_limit_stop_reading_only_while_writes_are_blocked() -> None:
    driver = open_driver(write_limit=200)
    driver.received(frame(0x9, b"p" * 125) * 2, 0.0)
    assert driver.pong_backlog  # 2 pongs of 127 bytes are owed
    assert driver.wants_data  # the transport takes them: nothing to stop
    driver.writes_blocked = True
    assert not driver.wants_data
    chunks, close = driver.output()
    assert len(b"".join(chunks)) == 254
    assert not close
    assert not driver.pong_backlog
    assert driver.wants_data


def test_a_violation_after_an_unanswered_message_waits_for_the_application() -> None:
    """The application took a message and has not come back: the peer's
    violation must not overtake its answer (RFC 6455, Autobahn 5.x)."""
    driver = open_driver()
    driver.received(text("first"), 0.0)
    assert driver.take_message() == "first"  # the application holds it now
    wake = driver.received(frame(0x3), 0.0)  # reserved opcode
    assert wake == Wake.NONE
    assert driver.core.failure_pending
    driver.queue_send("answer to first", compress=None)
    answer, close = driver.output()
    assert not close
    assert driver.take_message() is None  # asks for more: the failure applies
    assert driver.is_over()
    assert driver.has_output
    chunks, close = driver.output()
    assert close
    assert chunks[0][:1] == b"\x88"  # a close frame
    assert chunks[0][2:4] == (1002).to_bytes(2, "big")
    assert answer
    assert driver.close_code == 1002
    with pytest.raises(ConnectionClosedError):
        raise driver.closed_error()


def test_a_violation_with_nothing_unanswered_fails_at_once() -> None:
    driver = open_driver()
    assert driver.received(frame(0x3), 0.0) == Wake.ALL
    assert driver.is_over()
    assert driver.close_code == 1002


def test_a_violation_behind_queued_messages_waits_for_them() -> None:
    driver = open_driver()
    driver.received(text("one"), 0.0)
    driver.received(frame(0x3), 0.0)  # "one" still queued, untaken
    assert driver.core.failure_pending
    assert driver.take_message() == "one"
    assert driver.take_message() is None
    assert driver.is_over()


def test_concurrent_receivers_are_refused() -> None:
    driver = open_driver()
    driver.begin_receive()
    with pytest.raises(ConcurrencyError):
        driver.begin_receive()
    driver.end_receive()
    driver.begin_receive()


def test_leftover_of_a_cancelled_recv_goes_to_the_next_reader() -> None:
    driver = open_driver()
    driver.received(text("ab", fin=False) + frame(0x0, b"cd", fin=False), 0.0)
    assert driver.take_message() is None  # cancelled here, say
    assert "".join(driver.take_leftover()) == "abcd"  # type: ignore[arg-type]
    assert driver.take_leftover() == []


# -- sending ----------------------------------------------------------------------


def test_send_takes_str_and_bytes_like_and_refuses_the_rest() -> None:
    driver = open_driver()
    assert driver.queue_send("é", compress=None) == 1
    assert driver.queue_send(bytearray(b"ab"), compress=None) == 2
    assert driver.queue_send(memoryview(b"abc"), compress=None) == 3
    with pytest.raises(TypeError, match="int"):
        driver.queue_send(42, compress=None)  # type: ignore[arg-type]
    chunks, _ = driver.output()
    assert b"".join(chunks) == b"\x81\x02\xc3\xa9\x82\x02ab\x82\x03abc"


def test_send_after_our_close_reports_our_code_then_the_peers() -> None:
    driver = open_driver()
    assert driver.start_close(4001, "bye") is CloseStep.FLUSH
    with pytest.raises(ConnectionClosedError) as ours:
        driver.queue_send("late", compress=None)
    assert (ours.value.code, ours.value.reason) == (4001, "bye")
    assert driver.start_close(1000, "") is CloseStep.NOTHING
    driver.received(frame(0x8, b"\x03\xe8"), 0.0)
    with pytest.raises(ConnectionClosedOK) as peers:
        driver.queue_send("later", compress=None)
    assert peers.value.code == 1000


def test_close_during_the_handshake_drops_the_transport() -> None:
    driver, _ = server_driver()
    assert driver.start_close(1000, "") is CloseStep.ABORT


# -- pings ------------------------------------------------------------------------


def test_a_pong_answers_its_ping_and_every_earlier_one() -> None:
    driver = open_driver()
    first = driver.queue_ping(b"a", 1.0)
    second = driver.queue_ping(b"b", 2.0)
    third = driver.queue_ping(b"c", 3.0)
    with pytest.raises(ConcurrencyError):
        driver.queue_ping(b"c", 3.5)
    assert driver.received(frame(0xA, b"unknown"), 5.0) == Wake.NONE
    assert driver.received(frame(0xA, b"b"), 5.0) == Wake.PONGS
    assert (driver.ping_result(first), driver.ping_result(second)) == (4.0, 3.0)
    assert driver.ping_result(third) is None  # still waiting
    assert list(driver.pings) == [b"c"]


def test_a_ping_whose_connection_ends_raises_and_is_forgotten() -> None:
    driver = open_driver()
    record = driver.queue_ping(None, 0.0)
    assert len(next(iter(driver.pings))) == 4  # a random payload
    assert driver.transport_lost(1.0) == Wake.ALL
    with pytest.raises(ConnectionClosedError) as ended:
        driver.ping_result(record)
    assert ended.value.code == 1006
    assert not driver.pings


def test_a_cancelled_ping_is_forgotten() -> None:
    driver = open_driver()
    record = driver.queue_ping(b"x", 0.0)
    driver.forget_ping(record)
    assert driver.received(frame(0xA, b"x"), 1.0) == Wake.NONE


# -- handshakes -------------------------------------------------------------------


def test_the_server_policy_accepts_and_early_frames_are_delivered() -> None:
    admission = Admission(None, 1)
    driver, _ = server_driver(admission)
    wake = driver.received(upgrade_request() + text("early"), 0.0)
    assert wake & Wake.OPENED
    assert wake & Wake.MESSAGES
    assert driver.opened
    assert driver.request is not None
    assert driver.take_message() == "early"
    assert admission.admit("10.0.0.1") is not None  # the one slot is taken
    driver.transport_lost(1.0)  # frees it
    assert admission.admit("10.0.0.1") is None


def test_a_request_left_pending_is_accepted_later_with_its_early_frames() -> None:
    """An application that answers in its own time (ASGI): the policy
    leaves the request pending, and `accepted` opens it later."""
    settings = Settings()
    driver = Driver(settings.new_server_core(), settings, on_request=lambda d, r: None)
    wake = driver.received(upgrade_request() + text("early"), 0.0)
    assert not wake & Wake.OPENED
    assert driver.request is not None
    assert not driver.opened
    assert driver.core.state is State.CONNECTING
    core = driver.core
    assert isinstance(core, ServerConnection)
    wake = driver.accepted(core.accept(), 1.0)
    assert wake & Wake.OPENED
    assert wake & Wake.MESSAGES
    assert driver.opened
    assert driver.take_message() == "early"


def test_dropping_messages_keeps_reading_until_the_close_handshake_ends() -> None:
    driver = open_driver(max_queue=2)
    driver.received(text("kept") + text("for nobody"), 0.0)
    assert not driver.wants_data
    driver.start_close(1000, "")
    driver.drop_messages()
    assert driver.resumed  # the backend's reader learns it may read again
    assert driver.wants_data
    assert driver.take_message() is None
    driver.received(text("after") * 10 + frame(0x8, b"\x03\xe8"), 0.0)
    assert driver.wants_data  # nothing queued, however much came
    assert driver.take_message() is None
    assert driver.core.state is State.CLOSED


def test_an_invalid_close_code_raises_and_leaves_no_close_behind() -> None:
    driver = open_driver()
    with pytest.raises(LocalProtocolError):
        driver.start_close(1006, "")  # may not be sent
    assert driver.local_close is None
    assert driver.core.state is State.OPEN
    assert driver.start_close(4000, "fine") is CloseStep.FLUSH
    assert driver.local_close == (4000, "fine")


def test_origins_refused_and_a_failing_origin_check() -> None:
    driver, _ = server_driver(origins=["http://good.example"])
    driver.received(upgrade_request(), 0.0)
    assert not driver.opened
    chunks, close = driver.output()
    assert b"".join(chunks).startswith(b"HTTP/1.1 403")
    assert close

    def broken(request: HandshakeRequest) -> bool:
        raise RuntimeError("bug in the check")

    driver, _ = server_driver(origins=broken)
    driver.received(upgrade_request(), 0.0)
    assert b"".join(driver.output()[0]).startswith(b"HTTP/1.1 500")


def test_a_plain_http_request_gets_426_without_a_handler() -> None:
    driver, _ = server_driver()
    driver.received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert b"".join(driver.output()[0]).startswith(b"HTTP/1.1 426")


def client_driver() -> tuple[Driver, ClientConnection]:
    settings = Settings()
    core = new_client_core(WebSocketURI(False, "server.example.com", 80, "/chat"), settings)
    return Driver(core, settings), core


def answer(core: ClientConnection, status: int = 101) -> bytes:
    server = ServerConnection()
    server.receive_data(core.data_to_send())
    if status == 101:
        server.accept()
    else:
        server.reject(status, body=b"go away")
    return server.data_to_send()


@pytest.mark.parametrize(
    ("response", "status", "reason"),
    [
        (None, 403, "server rejected"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 101, "upgrade header"),
    ],
)
def test_handshake_outcomes_become_handshake_errors(
    response: bytes | None, status: int | None, reason: str
) -> None:
    driver, core = client_driver()
    wake = driver.received(response or answer(core, 403), 0.0)
    assert wake == Wake.OPENED
    assert not driver.opened
    assert isinstance(driver.outcome, HandshakeError)
    assert driver.outcome.status == status
    assert reason in str(driver.outcome).lower()


def test_a_client_that_opens_reports_it_and_a_lost_handshake_is_an_error() -> None:
    driver, core = client_driver()
    assert driver.received(answer(core), 0.0) == Wake.OPENED
    assert driver.opened
    driver, _ = client_driver()
    driver.transport_lost(0.0)
    assert isinstance(driver.outcome, HandshakeError)
    assert "closed before the handshake" in str(driver.outcome)


# -- output, time and the end -------------------------------------------------------


def test_output_says_close_once_and_frees_the_slot_first() -> None:
    driver = open_driver()
    freed: list[bool] = []
    driver.on_transport_closing(lambda: freed.append(True))
    driver.received(frame(0x8, b"\x03\xe8"), 0.0)  # the peer closes: server echoes, closes TCP
    chunks, close = driver.output()
    assert chunks == [b"\x88\x02\x03\xe8"]
    assert close
    assert freed == [True]
    assert driver.output() == ([], False)
    assert not driver.has_output
    driver.transport_lost(0.0)
    assert freed == [True]


def test_the_keepalive_fails_a_silent_peer_through_the_timer() -> None:
    driver = open_driver(ping_interval=1.0, ping_timeout=1.0)
    assert driver.deadline(0.0) == 1.0
    assert driver.timer(1.0) == Wake.NONE  # a keepalive ping goes out
    assert driver.output()[0][0][:1] == b"\x89"
    assert driver.timer(2.5) == Wake.ALL
    assert driver.close_code == 1011


def test_a_lost_transport_is_1006_for_everyone_waiting() -> None:
    driver = open_driver()
    assert driver.transport_lost(0.0) == Wake.ALL
    assert driver.is_over()
    assert driver.close_code == 1006
    assert driver.take_message() is None
    with pytest.raises(ConnectionClosedError):
        raise driver.closed_error()
    assert driver.core.state is State.CLOSED


def test_how_a_server_closes_after_its_handler() -> None:
    assert close_after_handler(None) == (1000, "")
    assert close_after_handler(ConnectionClosedOK(1000, "")) == (1000, "")
    assert close_after_handler(RuntimeError("bug")) == (1011, "internal error")


# -- reassembly -------------------------------------------------------------------


def test_reassembly_joins_fragments_of_either_kind() -> None:
    assembly = Reassembly()
    assert assembly.add(TextFragment(data="whole", final=True)) == "whole"
    assert assembly.add(TextFragment(data="a", final=False)) is None
    assert assembly.add(TextFragment(data="b", final=True)) == "ab"
    assert assembly.add(BytesFragment(data=b"x", final=False)) is None
    assert assembly.add(BytesFragment(data=b"y", final=True)) == b"xy"


@pytest.mark.parametrize(
    "fragment",
    [BytesFragment(data=b"\xff", final=False), TextFragment(data="€", final=False)],
    ids=["bytes", "text"],
)
def test_reassembly_of_a_million_tiny_fragments_costs_about_the_message_size(
    fragment: BytesFragment | TextFragment,
) -> None:
    """What a peer sending one byte per read would hand recv() if the core
    did not coalesce: 2**20 one-character fragments. Without merging, the
    list alone would take 8 MiB. tracemalloc's peak, not time, is checked."""
    count = 1 << 20
    assembly = Reassembly()
    tracemalloc.start()
    try:
        for _ in range(count):
            assembly.add(fragment)
        # Merged pieces of SETTLED or more, and a short tail of smaller ones.
        assert len(assembly.parts) <= count // Reassembly.SETTLED + 32
        if isinstance(fragment, TextFragment):
            message = assembly.add(TextFragment(data=fragment.data, final=True))
        else:
            message = assembly.add(BytesFragment(data=fragment.data, final=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == fragment.data * (count + 1)
    size = sys.getsizeof(message)
    assert peak < 3 * size + 256 * 1024, f"peak of {peak} bytes for a message of {size}"


def test_reassembly_parts_stay_what_recv_streaming_hands_out() -> None:
    """A cancelled recv() leaves `parts`; the adapters yield them, then
    reset the list."""
    assembly = Reassembly()
    big = b"B" * Reassembly.SETTLED
    for piece in [b"a", b"bc", big, b"d", b"e", b"f"]:
        assert assembly.add(BytesFragment(data=piece, final=False)) is None
    assert all(type(part) is bytes for part in assembly.parts)
    assert b"".join(assembly.parts) == b"abc" + big + b"def"  # type: ignore[arg-type]
    assert any(part is big for part in assembly.parts)  # a large piece is never copied early
    assembly.parts = []
    assert assembly.add(TextFragment(data="fresh", final=True)) == "fresh"


def test_driver_receives_one_byte_fragments_in_about_the_message_size() -> None:
    """The path every adapter takes: streaming core, 64 KiB reads, recv()."""
    size = 256 * 1024  # tracing is slow; see tests/wsproto_core/test_fragment_memory.py
    payload = bytes(range(256)) * (size // 256)
    data = one_byte_frames(payload, 0x2, masked=True)
    driver = open_driver(max_queue=1 << 20)
    reads = [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]
    messages = []
    tracemalloc.start()
    try:
        for read in reads:
            driver.received(read, 0.0)
            assert len(driver.fragments) <= 1  # one fragment per read, not one per frame
            message = driver.take_message()
            if message is not None:
                messages.append(message)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert messages == [payload]
    assert peak < 3 * size + 64 * 1024, f"peak of {peak} bytes for a message of {size}"


# -- the rest of the surface ------------------------------------------------------


def test_end_of_file_without_a_close_frame_is_1006() -> None:
    driver = open_driver()
    assert driver.eof(0.0) == Wake.ALL
    assert driver.close_code == 1006
    assert driver.output()[1]  # and the transport is to be closed


def test_prepared_messages_are_queued_while_open_only() -> None:
    driver = open_driver(compression=None)
    message = PreparedMessage("hi")
    assert driver.queue_prepared(message) == 4
    assert driver.output()[0] == [b"\x81\x02hi"]
    driver.start_close(1000, "")
    with pytest.raises(ConnectionClosedOK):
        driver.queue_prepared(message)


def test_forgetting_one_ping_keeps_the_others() -> None:
    driver = open_driver()
    first = driver.queue_ping(b"1", 0.0)
    driver.queue_ping(b"2", 0.0)
    driver.forget_ping(first)
    assert list(driver.pings) == [b"2"]


def test_an_answered_http_request_ends_as_1006_once_the_transport_is_gone() -> None:
    driver, _ = server_driver(http_handler=lambda request: HttpResponse(body=request.path.encode()))
    driver.received(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    answer = b"".join(driver.output()[0])
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"/page")
    assert driver.close_code is None  # no WebSocket ever: no close code yet
    driver.transport_lost(1.0)
    assert driver.close_code == 1006


def test_a_failing_http_handler_answers_500() -> None:
    def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("bug in the page")

    driver, _ = server_driver(http_handler=broken)
    driver.received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert b"".join(driver.output()[0]).startswith(b"HTTP/1.1 500")


def test_the_per_address_limit_answers_503_with_retry_after() -> None:
    admission = Admission(None, 1)
    assert admission.admit("10.0.0.1") is None  # someone from there is in already
    driver = Driver(
        Settings().new_server_core(), Settings(), on_request=server_policy(admission, "10.0.0.1")
    )
    driver.received(upgrade_request(), 0.0)
    answer = b"".join(driver.output()[0])
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 5" in answer
    assert not driver.opened


def test_a_ping_after_the_close_raises() -> None:
    driver = open_driver()
    driver.start_close(1000, "")
    with pytest.raises(ConnectionClosedOK):
        driver.queue_ping(b"late", 0.0)
