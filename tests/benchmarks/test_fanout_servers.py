"""The fan-out servers added beside the asyncio ones (ours on blocking and
trio, websockets' threaded server, the library-less floor) deliver every
message, and the idle
memory script measures one of them. No timing or size is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
IMPLS = [
    "ours-asyncio",
    "ours-blocking",
    "ours-trio",
    "websockets-threaded",
    "websockets-threaded-send",
    "raw",
]


def run(script: str, *args: str) -> list[list[str]]:
    """The table rows (cells) a benchmark script printed, header excluded."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.split("|")[1:-1]] for row in rows[1:]]


def test_each_server_delivers_everything_and_reports_first_and_last() -> None:
    rows = run(
        "fanout_bench.py",
        *("--receivers", "8", "--messages", "20", "--probes", "3", "--rounds", "1"),
        *("--impls", ",".join(IMPLS)),
    )
    assert [row[0] for row in rows] == IMPLS
    for row in rows:
        assert len(row) == 7  # server, deliveries/s, first p50/p99, last p50/p99, ratio
        assert all(cell.endswith(" ms") for cell in row[2:6])


def test_idle_memory_reports_a_growth_per_connection() -> None:
    rows = run("idle_memory.py", "--connections", "20", "--impls", "ours-blocking")
    assert [row[0] for row in rows] == ["ours-blocking"]
    float(rows[0][3].split()[0])  # KiB per connection: a number
