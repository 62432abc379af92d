"""The end-to-end benchmark's library-less floor server answers every frame
of every length class, and the layout spread runs from its copies. No
timing is asserted: only that the round trips were made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import e2e_bench  # noqa: E402


def test_the_raw_floor_answers_every_frame_with_one_of_its_length() -> None:
    server, port = e2e_bench.start_server("raw")
    try:
        for size in (16, 1024, 70_000):  # 7-bit, 16-bit and 64-bit lengths
            sock = e2e_bench.open_connection(port)
            sock.settimeout(10)  # a floor that stopped answering fails, not hangs
            sock.sendall(e2e_bench.masked_frame(size) * 3)
            expect = e2e_bench.reply_size(size) * 3
            got = b""
            while len(got) < expect:
                chunk = sock.recv(expect - len(got))
                assert chunk, "the floor server closed early"
                got += chunk
            head = e2e_bench.reply_size(size) - size
            assert got[:1] == b"\x82"
            assert got[head : head + size] == bytes(size)
            sock.close()
        assert e2e_bench.pipelined(port, 16, 0.2) > 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_layout_spread_reports_each_server_over_its_copies() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "layout_spread.py"),
            *("--impls", "raw", "--copies", "2", "--seconds", "0.2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("2 copies x 1 rounds")
    assert lines[1].startswith("raw ")
    assert all(column in lines[1] for column in ("rt/s 16 ", "rt/s 1024 ", "p50 us "))
