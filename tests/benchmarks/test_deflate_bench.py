"""The compression benchmark must keep working: both libraries echo every
message (the drivers assert it) and negotiate compression. No timing is
asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "deflate_bench.py"


def test_quick_run_covers_every_workload_and_the_memory_table() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| chat JSON")]
    assert len(rows) == 4
    assert "| 1 MiB text |" in result.stdout
    assert "| after one message each way |" in result.stdout
