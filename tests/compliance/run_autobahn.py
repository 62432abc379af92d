"""Run the Autobahn|Testsuite against every adapter, both roles, and
summarise the results.

    python tests/compliance/run_autobahn.py --autobahn /path/to/autobahn-testsuite \
        --python /path/to/autobahn-venv/bin/python [--cases "1.*,2.*"] [--exclude "12.*,13.*"]

The testsuite is not ours and is not committed: see tests/compliance/README.md
for how to fetch and install it into its own virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BACKENDS = ["blocking", "asyncio", "trio"]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


# The testsuite's report writer crashes on case 7.3.2 whatever the testee
# (it stores its own close reason as bytes, then json.dumps the case), and
# the fuzzer then idles forever. Rather than patch its code, start it with
# a json encoder that writes bytes as text.
BOOTSTRAP = """
import json, runpy, sys
_default = json.JSONEncoder.default
def _bytes_as_text(self, value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return _default(self, value)
json.JSONEncoder.default = _bytes_as_text
sys.argv = ["wstest"] + sys.argv[1:]
runpy.run_module("autobahntestsuite.wstest", run_name="__main__")
"""


def wstest(
    args: argparse.Namespace, mode: str, spec: dict[str, object], workdir: Path
) -> subprocess.Popen[bytes]:
    spec_file = workdir / f"{mode}.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, PYTHONPATH=str(Path(args.autobahn) / "autobahntestsuite"))
    log = (workdir / f"{mode}.log").open("wb")
    return subprocess.Popen(
        [args.python, "-c", BOOTSTRAP, "-m", mode, "-s", str(spec_file)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def summarise(index_file: Path) -> dict[str, Counter[str]]:
    index = json.loads(index_file.read_text())
    summary: dict[str, Counter[str]] = {}
    for agent, cases in index.items():
        counts: Counter[str] = Counter()
        for case, result in cases.items():
            verdict = result["behavior"]
            if result.get("behaviorClose") not in (None, "OK", "INFORMATIONAL") and verdict == "OK":
                verdict = f"close {result['behaviorClose']}"
            counts[verdict] += 1
            if verdict not in ("OK", "INFORMATIONAL"):
                print(f"  {agent} {case}: {verdict} / close {result.get('behaviorClose')}")
        summary[agent] = counts
    return summary


def run_servers(args: argparse.Namespace, workdir: Path) -> dict[str, Counter[str]]:
    """The fuzzing client against each echo server."""
    servers, procs = [], []
    for backend in BACKENDS:
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "adapters.echo",
                    "--backend",
                    backend,
                    "--port",
                    str(port),
                    "--max-message-size",
                    str(64 << 20),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
        )
        wait_listening(port)
        servers.append({"agent": f"server-{backend}", "url": f"ws://127.0.0.1:{port}"})
    try:
        spec = {
            "outdir": "./reports/servers",
            "servers": servers,
            "cases": args.cases.split(","),
            "exclude-cases": args.exclude.split(",") if args.exclude else [],
            "exclude-agent-cases": {},
        }
        fuzzer = wstest(args, "fuzzingclient", spec, workdir)
        if fuzzer.wait(timeout=args.timeout) != 0:
            raise RuntimeError("the fuzzing client failed")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    return summarise(workdir / "reports" / "servers" / "index.json")


def run_clients(args: argparse.Namespace, workdir: Path) -> dict[str, Counter[str]]:
    """Each client against the fuzzing server."""
    port = free_port()
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": "./reports/clients",
        "cases": args.cases.split(","),
        "exclude-cases": args.exclude.split(",") if args.exclude else [],
        "exclude-agent-cases": {},
    }
    fuzzer = wstest(args, "fuzzingserver", spec, workdir)
    try:
        wait_listening(port)
        for backend in BACKENDS:
            subprocess.run(
                [
                    sys.executable,
                    str(HERE / "client.py"),
                    "--backend",
                    backend,
                    "--quiet",
                    "--url",
                    f"ws://127.0.0.1:{port}",
                    "--agent",
                    f"client-{backend}",
                ],
                cwd=ROOT,
                check=True,
                timeout=args.timeout,
            )
    finally:
        fuzzer.terminate()
        fuzzer.wait(timeout=30)
    return summarise(workdir / "reports" / "clients" / "index.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--autobahn", required=True, help="checkout of autobahn-testsuite")
    parser.add_argument("--python", required=True, help="python of the testsuite's venv")
    parser.add_argument("--cases", default="*")
    parser.add_argument("--exclude", default="", help='such as "12.*,13.*"')
    parser.add_argument("--roles", default="servers,clients")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", help="keep the reports in this folder")
    args = parser.parse_args()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="autobahn-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Counter[str]] = {}
    if "servers" in args.roles:
        results |= run_servers(args, workdir)
    if "clients" in args.roles:
        results |= run_clients(args, workdir)
    verdicts = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
    print(f"{'agent':<18}" + "".join(f"{v:>15}" for v in verdicts) + f"{'other':>10}")
    for agent, counts in sorted(results.items()):
        other = sum(n for v, n in counts.items() if v not in verdicts)
        print(f"{agent:<18}" + "".join(f"{counts[v]:>15}" for v in verdicts) + f"{other:>10}")
    print(f"reports in {workdir}")
    bad = any(n for c in results.values() for v, n in c.items() if v not in ("OK", "INFORMATIONAL"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
