"""The ASGI benchmark must keep working: uvicorn starts with each of the
four WebSocket classes on both loops, each echoes text and binary exactly
(the runner raises otherwise), and every row and ratio gets numbers. No
timing or size is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "asgi_bench.py"
IMPLS = ["ours", "websockets", "websockets-sansio", "wsproto"]
LOOPS = ["asyncio", "uvloop"]


def test_quick_run_measures_every_class_on_every_loop() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--seconds", "0.1", "--latency-count", "20", "--connections", "10"),
            *("--settle", "0.05", "--repeat", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines if line.startswith("| ")]
    assert rows[0][0] == "server"
    assert [row[0] for row in rows[1:]] == [f"{ws} ({loop})" for loop in LOOPS for ws in IMPLS]
    for row in rows[1:]:
        numbers = [float(value.replace(",", "")) for value in row[1:]]
        assert len(numbers) == 5  # rt/s 16 B, rt/s 1 KiB, p50, p99, KiB/conn
        assert all(n > 0 for n in numbers[:4])  # memory may round to nothing with 10
    for loop in LOOPS:
        ratio_line = next(line for line in lines if line.startswith(f"{loop}: rt/s 16 B"))
        assert ratio_line.count("x (vs ") >= 3
        assert any(line in (f"{loop}: met", f"{loop}: not met") for line in lines)
