"""The load generator (`python -m adapters.chat.load`): its statistics, its
source-address spreading and its SVG on their own, and short real runs
against real wschat processes of every backend, good and bad."""

from __future__ import annotations

import io
import json
import random
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from adapters.chat.load import LoadConfig, main, warnings_for
from adapters.chat.load_stats import Histogram, auto_sources, parse_sources
from adapters.chat.load_svg import Panel, Series, log_ticks, nice_ticks, render

from .helpers import BACKENDS, running_chat

SVG = "{http://www.w3.org/2000/svg}"

# -- the histogram ---------------------------------------------------------------


def exact_percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[int(rank) - 1]


def test_histogram_percentiles_are_within_one_percent_of_the_exact_ones() -> None:
    rng = random.Random(13)
    values = [rng.lognormvariate(-6, 1.5) for _ in range(20_000)]
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    assert histogram.count == len(values)
    assert histogram.max == max(values)
    assert histogram.min == min(values)
    for percent in (0, 1, 50, 90, 99, 99.9, 100):
        exact = exact_percentile(values, percent)
        assert histogram.percentile(percent) == pytest.approx(exact, rel=0.01), percent
    assert histogram.percentile(100) == max(values)


def test_histogram_of_one_value_is_exact_and_an_empty_one_has_none() -> None:
    histogram = Histogram()
    assert histogram.percentiles([50, 99]) == [None, None]
    assert histogram.mean is None
    histogram.add(0.0123)
    assert histogram.percentiles([0, 50, 100]) == [0.0123, 0.0123, 0.0123]
    with pytest.raises(ValueError, match="from 0 to 100"):
        histogram.percentile(101)


def test_histogram_merge_is_the_histogram_of_both() -> None:
    first, second, both = Histogram(), Histogram(), Histogram()
    for i in range(1, 200):
        (first if i % 3 else second).add(i / 1000)
        both.add(i / 1000)
    first.merge(second)
    assert first.count == both.count
    assert first.total == pytest.approx(both.total)
    assert first.percentiles([10, 50, 99]) == both.percentiles([10, 50, 99])


def test_values_below_the_floor_share_the_first_bucket() -> None:
    histogram = Histogram()
    for value in (0.0, -1.0, 1e-9):
        histogram.add(value)
    assert Histogram.bucket(0.0) == Histogram.bucket(1e-9) == 0
    assert histogram.percentile(50) <= 1e-6 < Histogram.bucket(2e-6)


# -- source addresses ------------------------------------------------------------


def test_sources_hand_out_addresses_in_turn_over_ranges() -> None:
    sources = parse_sources("127.0.0.254-127.0.1.1, 10.0.0.9")
    assert len(sources) == 5
    assert [sources.address(i) for i in range(6)] == [
        "127.0.0.254",
        "127.0.0.255",
        "127.0.1.0",
        "127.0.1.1",
        "10.0.0.9",
        "127.0.0.254",
    ]
    assert sources.describe() == "127.0.0.254-127.0.1.1,10.0.0.9"
    assert sources.most_per_address(5) == 1
    assert sources.most_per_address(11) == 3


def test_a_wide_range_costs_nothing_until_used() -> None:
    sources = parse_sources("127.0.0.0-127.255.255.255")
    assert len(sources) == 1 << 24
    assert sources.address(1 << 20) == "127.16.0.0"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("127.0.0.9-127.0.0.2", "backwards"),
        ("127.0.0.1-::1", "mixes"),
        ("127.0.0.1,::1", "mix"),
        ("127.0.0.1,,127.0.0.2", "empty"),
        ("localhost", "not an IP"),
    ],
)
def test_bad_source_lists_say_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_sources(spec)


def test_auto_sources_only_for_ipv4_loopback() -> None:
    for host in ("127.0.0.1", "127.9.9.9", "localhost"):
        sources = auto_sources(host, 300)
        assert sources is not None
        assert len(sources) == 300
        assert sources.address(0) == "127.0.0.2"
        assert sources.address(299) == "127.0.1.45"
    assert auto_sources("::1", 10) is None  # one IPv6 loopback address
    assert auto_sources("192.0.2.1", 10) is None  # not ours to pick
    assert auto_sources("chat.example", 10) is None


def test_warnings_name_the_chat_limits_a_run_would_hit() -> None:
    url = "ws://127.0.0.1:1/ws"
    spread = LoadConfig(
        url=url, clients=100, rate=100, duration=1, sources=auto_sources("127.0.0.1", 100)
    )
    assert warnings_for(spread) == []
    crowded = LoadConfig(url=url, clients=100, rate=10, duration=1, sources=None)
    said = warnings_for(crowded)
    assert any("100 clients share a source address" in w for w in said)
    assert any("10.0 messages/s per source address" in w for w in said)
    two = parse_sources("127.0.0.2-127.0.0.3")
    few = LoadConfig(url=url, clients=30, rate=30, duration=1, sources=two)
    [said_once] = warnings_for(few)  # 15 clients an address is allowed; 15 msgs/s is not
    assert "15.0 messages/s per source address" in said_once


# -- the SVG -----------------------------------------------------------------------


def test_nice_ticks_cover_the_range_in_round_steps() -> None:
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0.13, 0.87) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = nice_ticks(3, 3)  # a flat series still gets an axis
    assert ticks[0] <= 3 <= ticks[-1]
    assert len(ticks) > 1
    with pytest.raises(ValueError):
        nice_ticks(5, 1)


def test_log_ticks_are_one_two_five_and_cover_the_range() -> None:
    assert log_ticks(1.5, 40) == [1, 2, 5, 10, 20, 50]
    assert log_ticks(2, 2) == [2]
    wide = log_ticks(0.001, 1e6)  # nine decades: powers of ten only
    assert wide == [10.0**e for e in range(-3, 7)]


def test_the_svg_is_xml_with_a_line_per_unbroken_stretch() -> None:
    latency = Series(
        "p50 <ms> & more", [(0, 1.0), (1, 2.0), (2, None), (3, 4.0), (4, 8.0), (5, None), (6, 3.0)]
    )
    rate = Series("rate", [(x, 100.0 * x) for x in range(7)])
    svg = render(
        [Panel("latency", "ms", [latency], log_y=True), Panel("rate", "1/s", [rate])],
        title="a & b",
        x_label="s",
    )
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    polylines = root.findall(f"{SVG}polyline")
    # latency: (0..1) and (3..4) as lines, (6) as a dot; rate: one line of 7
    assert sorted(len(p.get("points", "").split()) for p in polylines) == [2, 2, 7]
    assert len(root.findall(f"{SVG}circle")) == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "p50 <ms> & more" in texts
    assert "a & b" in texts
    for polyline in polylines:  # every point inside the picture
        for pair in polyline.get("points", "").split():
            x, y = map(float, pair.split(","))
            assert 0 <= x <= float(root.get("width", 0))
            assert 0 <= y <= float(root.get("height", 0))


# -- real runs -----------------------------------------------------------------------


def run_load(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--quiet", *args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def check_consistent(summary: dict[str, Any]) -> None:
    """What must hold in any summary, whatever happened."""
    messages, deliveries = summary["messages"], summary["deliveries"]
    assert (
        messages["reached_everyone"] + messages["reached_some"] + messages["reached_no_one"]
        == messages["sent"]
    )
    assert deliveries["received"] + deliveries["lost"] == deliveries["expected"]
    assert (
        deliveries["lost"]
        == deliveries["lost_to_closed_clients"] + deliveries["lost_to_connected_clients"]
    )
    assert summary["latency_s"]["count"] == deliveries["received"]
    assert summary["to_all_receivers_s"]["count"] == messages["reached_everyone"]
    assert deliveries["duplicates"] == deliveries["unknown"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_short_run_delivers_every_message_to_every_client(backend: str, tmp_path: Path) -> None:
    plot = tmp_path / "load.svg"
    with running_chat(backend) as chat:
        code, out, err = run_load(
            "--url", chat.ws_url, "--clients", "20", "--rate", "20", "--duration", "2",
            "--json", "--plot", str(plot),
        )  # fmt: skip
    summary = json.loads(out)
    check_consistent(summary)
    clients, messages, deliveries = summary["clients"], summary["messages"], summary["deliveries"]
    assert clients["joined"] == 20
    assert clients["sources"] == "127.0.0.2-127.0.0.21"
    assert messages["sent"] == 40
    # everyone is in the room, the sender too: 20 deliveries a message
    assert deliveries["expected"] == 40 * 20
    assert deliveries["lost"] == 0, summary
    assert messages["reached_everyone"] == 40
    assert summary["closes"] == {}
    assert summary["errors"] == {}
    assert code == 0, err
    assert (
        0
        < summary["latency_s"]["p50"]
        <= summary["latency_s"]["p99"]
        <= summary["latency_s"]["max"]
    )
    root = ET.fromstring(plot.read_text())
    assert root.findall(f"{SVG}polyline")


def test_the_text_summary_names_every_figure() -> None:
    with running_chat("asyncio") as chat:
        code, out, _ = run_load(
            "--url", chat.ws_url, "--clients", "5", "--rate", "5", "--duration", "1"
        )
    assert code == 0
    for heading in (
        "clients ",
        "messages ",
        "deliveries ",
        "latency ",
        "to all ",
        "closes ",
        "errors ",
    ):
        assert heading in out
    assert "25 expected, 25 received, 0 lost" in out


def test_refusals_and_rate_limits_are_counted_not_fatal() -> None:
    """25 clients from one address: wschat admits 20 (503 for the rest) and
    allows that address 2 messages a second after a burst of 10: of 20
    messages in a second, some are refused, told as rate_limited errors,
    and reach no one. (Joins are limited per address too: whatever
    is refused is counted.)"""
    with running_chat("asyncio") as chat:
        code, out, err = run_load(
            "--url", chat.ws_url, "--source", "none", "--clients", "25",
            "--rate", "20", "--duration", "1", "--json",
        )  # fmt: skip
    summary = json.loads(out)
    check_consistent(summary)
    clients = summary["clients"]
    assert clients["connect_failures"] == {"HTTP 503": 5}
    # the 20 admitted join, unless the address's join limit refuses some
    assert clients["joined"] + sum(clients["join_failures"].values()) == 20
    assert set(clients["join_failures"]) <= {"rate_limited"}, clients
    assert summary["errors"].get("rate_limited", 0) >= 1
    assert summary["messages"]["reached_no_one"] >= 1
    assert (
        summary["deliveries"]["lost"] == clients["joined"] * summary["messages"]["reached_no_one"]
    )
    assert code == 3
    assert "did not get in" in err
    assert "deliveries lost" in err


def test_a_server_that_closes_everyone_is_reported() -> None:
    with running_chat("asyncio") as chat:
        threading.Timer(2.0, chat.stop).start()  # Ctrl-C: wschat closes every client with 1001
        code, out, err = run_load(
            "--url", chat.ws_url, "--clients", "10", "--rate", "10", "--duration", "20", "--json"
        )
    summary = json.loads(out)
    check_consistent(summary)
    assert sum(summary["closes"].values()) == 10
    assert all(label.startswith("1001") for label in summary["closes"])
    assert summary["messages"]["sent"] < 200  # it stopped when no one was left
    assert code == 3
    assert "the server closed every connection" in err


def test_no_server_is_one_clear_line_and_exit_1() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "adapters.chat.load", "--url", f"ws://127.0.0.1:{port}/ws",
         "--clients", "30", "--rate", "1", "--duration", "1", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "no client could join" in done.stderr
    assert "connection refused" in done.stderr
    assert "is wschat running there?" in done.stderr
    assert done.stdout == ""


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        run_load("--url", "http://127.0.0.1:1/ws")
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        run_load("--url", "ws://127.0.0.1:1/ws", "--source", "127.0.0.9-127.0.0.1")
    assert exited.value.code == 2
