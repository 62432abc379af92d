"""End-to-end echo measured from several copies of the tree, interleaved.

    python benchmarks/layout_spread.py --impls ours-asyncio,picows,raw --copies 4

One run of `e2e_bench.py` can move by a fifth with nothing changed but the
directory the tree sits in: the same code, copied to four paths, gave
175-206 k round trips per second at 16 B, and one path stayed low run
after run. (The paths end up in the interpreter's memory, which moves
everything after them; layout effects of this size are well known for
CPython.) A before/after comparison or a ratio against a peer taken from
one path can therefore be a fifth off either way.

This copies what the servers import (`wsproto_core` with its compiled
modules, `adapters`, `benchmarks`) to `--copies` directories whose paths
differ in length, runs every server of `--impls` from every copy in turn,
and reports for each server the median over all its runs and the range.
`--trees` takes one tree or more (default: this one); with two, a before
and an after, their copies are interleaved too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
COPIED = ["wsproto_core", "adapters", "benchmarks"]

# Runs in a copy: its own e2e_bench starts its own servers.
MEASURE = """
import json, sys
sys.path.insert(0, "benchmarks")
import e2e_bench
server, port = e2e_bench.start_server(sys.argv[1])
try:
    seconds = float(sys.argv[2])
    result = {
        "rt/s 16": e2e_bench.pipelined(port, 16, seconds),
        "rt/s 1024": e2e_bench.pipelined(port, 1024, seconds),
        "p50 us": e2e_bench.latency(port, 2000)[0],
    }
finally:
    server.terminate()
    server.wait()
print(json.dumps(result))
"""
COLUMNS = ["rt/s 16", "rt/s 1024", "p50 us"]


def make_copies(tree: Path, count: int, base: Path) -> list[Path]:
    """`count` copies of `tree`, at paths of different lengths."""
    copies = []
    for index in range(count):
        copy = base / ("c" * (index + 1))
        for name in COPIED:
            shutil.copytree(tree / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(copy)
    return copies


def measure(copy: Path, impl: str, seconds: float) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, impl, str(seconds)],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=seconds * 20 + 120,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impls", default="ours-asyncio,picows,raw")
    parser.add_argument("--trees", default=str(HERE.parent), help="comma-separated trees")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="runs per copy")
    parser.add_argument("--seconds", type=float, default=2.0, help="per pipelined size")
    args = parser.parse_args()
    impls = [name for name in args.impls.split(",") if name]
    trees = [Path(tree).resolve() for tree in args.trees.split(",") if tree]
    with tempfile.TemporaryDirectory(prefix="layout") as scratch:
        copies = {
            tree: make_copies(tree, args.copies, Path(scratch) / str(number))
            for number, tree in enumerate(trees)
        }
        runs: dict[tuple[Path, str], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for index in range(args.copies):
                for tree in trees:
                    for impl in impls:
                        result = measure(copies[tree][index], impl, args.seconds)
                        runs.setdefault((tree, impl), []).append(result)
    print(f"{args.copies} copies x {args.rounds} rounds; median [lowest - highest] per server")
    for (tree, impl), results in runs.items():
        cells = []
        for column in COLUMNS:
            values = [result[column] for result in results]
            low, mid, high = min(values), statistics.median(values), max(values)
            cells.append(f"{column} {mid:,.1f} [{low:,.1f} - {high:,.1f}]")
        label = impl if len(trees) == 1 else f"{tree.name}: {impl}"
        print(f"{label:<36}" + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
