"""The chat load benchmark must keep working: a tiny run on one backend,
with and without Redis, gives one complete row each with every message
delivered. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chat_load.py"


def test_a_tiny_run_fills_a_row_per_hub() -> None:
    result = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--clients", "6", "--duration", "1"),
            *("--backends", "trio", "--rate-per-100", "100"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in result.stdout.splitlines()
        if line.startswith("| trio")
    ]
    assert [row[1] for row in rows] == ["memory", "redis, 2 workers"]
    for row in rows:
        assert row[2] == "6 (6 joined)"
        delivered, expected = (int(n.replace(",", "")) for n in row[4].split(" / "))
        assert delivered == expected > 0
