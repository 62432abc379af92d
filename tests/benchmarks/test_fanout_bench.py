"""The fan-out benchmark must keep working: every receiver gets every
message from each server (the runner raises otherwise). No timing is
asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fanout_bench.py"


def test_quick_run_delivers_everything_from_each_server() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--receivers",
            "8",
            "--messages",
            "20",
            "--probes",
            "2",
            "--rounds",
            "1",
            "--impls",
            "ours,websockets,aiohttp",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["ours", "websockets", "aiohttp"]
