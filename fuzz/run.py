"""Run the fuzz harnesses under libFuzzer and report what each reached.

    python fuzz/run.py [harness...]                 # brief: 2000 runs each
    python fuzz/run.py --long [harness...]          # 1,000,000 runs each
    python fuzz/run.py --long --runs 5000000 resp   # more
    python fuzz/run.py --time 600 server_deflate    # for a time instead
    python fuzz/run.py --jobs 2 --long              # two harnesses at once

Each harness starts from its committed seed corpus (fuzz/corpus/<name>/,
never written to) plus fuzz/work/<name>/, where the inputs libFuzzer finds
are kept between runs (git ignores it). A crash is written to
fuzz/crashes/<name>-crash-<sha1> (also ignored): reproduce it with
`python fuzz/<name>.py fuzz/crashes/<file>`, minimize it with
`-minimize_crash=1 -runs=100000`. The report gives executions, exec/s,
libFuzzer's coverage (`cov`: edges; `ft`: features) and the wall time; the
exit status is 1 if any harness failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = (
    "server_whole",
    "server_streaming",
    "server_deflate",
    "client_frames",
    "handshake",
    "extensions",
    "chat_protocol",
    "resp",
)
_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)")
_PROGRESS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")
_RATE = re.compile(r"stat::average_exec_per_sec:\s+(\d+)")
_EXECS = re.compile(r"stat::number_of_executed_units:\s+(\d+)")


@dataclass
class Result:
    harness: str
    returncode: int
    executions: int
    exec_per_sec: int
    cov: int
    ft: int
    seconds: float
    crash: str | None

    def line(self) -> str:
        status = "ok" if self.returncode == 0 else f"FAILED (exit {self.returncode})"
        crash = f" crash: {self.crash}" if self.crash else ""
        return (
            f"{self.harness:<17} {self.executions:>10} execs {self.exec_per_sec:>7} exec/s "
            f"cov {self.cov:>5} ft {self.ft:>6} {self.seconds:>8.1f} s  {status}{crash}"
        )


def command(
    harness: str,
    *,
    runs: int | None,
    seconds: int | None,
    work: Path,
    crashes: Path,
    extra: list[str],
) -> list[str]:
    """The libFuzzer command line for one harness: new inputs go to `work`
    (the first corpus directory is the one libFuzzer writes to), the seed
    corpus is read only."""
    args = [
        sys.executable,
        str(HERE / f"{harness}.py"),
        str(work),
        str(HERE / "corpus" / harness),
        "-print_final_stats=1",
        f"-artifact_prefix={crashes}/{harness}-",
        "-rss_limit_mb=2048",
        "-timeout=10",
    ]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={seconds}")
    dictionary = HERE / "dicts" / f"{harness}.dict"
    if dictionary.exists():
        args.append(f"-dict={dictionary}")
    return args + extra


def parse(harness: str, returncode: int, output: str, seconds: float) -> Result:
    """Read libFuzzer's final stats; the last progress line if it died early."""
    cov = ft = executions = 0
    for match in _PROGRESS.finditer(output):
        executions, cov, ft = (int(g) for g in match.groups())
    done = _DONE.search(output)
    if done:
        executions, cov, ft = (int(g) for g in done.groups())
    if (execs := _EXECS.search(output)) is not None:
        executions = int(execs.group(1))
    rate = _RATE.search(output)
    crash = re.search(r"Test unit written to (\S+)", output)
    return Result(
        harness,
        returncode,
        executions,
        int(rate.group(1)) if rate and int(rate.group(1)) else int(executions / max(seconds, 1e-9)),
        cov,
        ft,
        seconds,
        crash.group(1) if crash else None,
    )


def run_one(
    harness: str,
    *,
    runs: int | None,
    seconds: int | None,
    work_root: Path,
    crashes: Path,
    extra: list[str],
    log: Path | None,
) -> Result:
    work = work_root / harness
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    args = command(harness, runs=runs, seconds=seconds, work=work, crashes=crashes, extra=extra)
    # libFuzzer's output goes to a file as it runs, so that a long run can
    # be watched (tail -f) and what it reached is known even if it is stopped.
    with tempfile.TemporaryDirectory() as scratch:
        path = (log or Path(scratch)) / f"{harness}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with path.open("w") as sink:
            done = subprocess.run(args, stdout=sink, stderr=subprocess.STDOUT, check=False)  # noqa: S603
        elapsed = time.monotonic() - started
        output = path.read_text(errors="replace")
    result = parse(harness, done.returncode, output, elapsed)
    if done.returncode != 0:
        print(output[-4000:], file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harnesses", nargs="*", metavar="harness", help=", ".join(HARNESSES))
    parser.add_argument("--long", action="store_true", help="1,000,000 runs each (see --runs)")
    parser.add_argument("--runs", type=int, help="executions per harness")
    parser.add_argument("--time", type=int, help="seconds per harness instead of a run count")
    parser.add_argument("--jobs", type=int, default=1, help="harnesses run at once")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="new corpus entries")
    parser.add_argument("--crashes", type=Path, default=HERE / "crashes")
    parser.add_argument("--log", type=Path, help="keep each harness's libFuzzer output here")
    parser.epilog = "Flags after -- go to libFuzzer, e.g. -- -max_len=1024."
    args = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args:  # libFuzzer's flags start with "-": keep them from argparse
        extra = args[args.index("--") + 1 :]
        args = args[: args.index("--")]
    options = parser.parse_args(args)
    unknown = set(options.harnesses) - set(HARNESSES)
    if unknown:
        parser.error(f"no harness {', '.join(sorted(unknown))}; there are {', '.join(HARNESSES)}")
    harnesses = options.harnesses or list(HARNESSES)
    runs = options.runs or (1_000_000 if options.long else 2000)
    if options.time is not None and options.runs is None:
        runs = None  # the time decides
    kwargs = {
        "runs": runs,
        "seconds": options.time,
        "work_root": options.work,
        "crashes": options.crashes,
        "extra": extra,
        "log": options.log,
    }
    failed = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=options.jobs) as pool:
        futures = [pool.submit(run_one, h, **kwargs) for h in harnesses]
        for future in futures:
            result = future.result()
            print(result.line(), flush=True)
            failed |= result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
