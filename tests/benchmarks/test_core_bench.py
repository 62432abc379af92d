"""The benchmark must keep working: every library's driver handles every
message it is given (the runner raises otherwise). No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "core_bench.py"


def test_quick_run_covers_every_library_and_path() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--sizes", "16,70000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("server", "client"))]
    assert len(rows) == 3 * 2 * 2  # paths x kinds x sizes
    assert "idle server connection: ours" in result.stdout
