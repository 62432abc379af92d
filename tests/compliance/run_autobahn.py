"""Run the Autobahn|Testsuite against every adapter, both roles, and
summarise the results.

    python tests/compliance/run_autobahn.py --autobahn /path/to/autobahn-testsuite \
        --python /path/to/autobahn-venv/bin/python [--cases "1.*,2.*"] [--exclude "12.*,13.*"]

Roles: `servers` (our echo servers), `clients` (our clients) and `asgi`
(our uvicorn protocol class, `adapters.asgi`, serving an ASGI echo app;
with `--asgi-peers` also uvicorn's own classes, for comparison only).

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
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ["blocking", "asyncio", "trio"]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MAX_MESSAGE_SIZE = 64 << 20  # case 9.x sends messages of up to 16 MiB
ROLES = ("servers", "clients", "asgi")
# The testsuite waits 1 s for our close reply, through txaio's batched timer,
# which rounds its deadline down to a whole second of the wall clock: the
# wait is anywhere in (0, 1] s, so every close risked an UNCLEAN verdict
# with a chance of its round trip in seconds (a millisecond: one in a
# thousand, some 0.2 a pass of the compression cases, on any backend).
# Asking for 2 s gives every close at least the intended second.
CLOSE_TIMEOUT_OPTIONS = {"closeHandshakeTimeout": 2}
GOOD = ("OK", "INFORMATIONAL")


@dataclass(frozen=True)
class AsgiAgent:
    """One uvicorn process serving `asgi_echo:app` with some `--ws` class."""

    name: str
    options: tuple[str, ...]
    peer: bool = False  # uvicorn's own class: its verdicts do not decide the exit status
    deflate: bool = True


OURS = "adapters.asgi:WebSocketProtocol"
ASGI_AGENTS = (
    AsgiAgent("asgi-ours", ("--ws", OURS)),
    AsgiAgent(
        "asgi-ours-nodeflate", ("--ws", OURS, "--ws-per-message-deflate", "false"), deflate=False
    ),
    AsgiAgent("asgi-websockets", ("--ws", "websockets"), peer=True),
    AsgiAgent("asgi-websockets-sansio", ("--ws", "websockets-sansio"), peer=True),
    AsgiAgent("asgi-wsproto", ("--ws", "wsproto"), peer=True),
)


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
    args: argparse.Namespace,
    mode: str,
    spec: dict[str, object],
    workdir: Path,
    log_name: str | None = None,
) -> subprocess.Popen[bytes]:
    name = mode if log_name is None or log_name == "servers" else f"{mode}-{log_name}"
    spec_file = workdir / f"{name}.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, PYTHONPATH=str(Path(args.autobahn) / "autobahntestsuite"))
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(
        [args.python, "-c", BOOTSTRAP, "-m", mode, "-s", str(spec_file)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def verdict_of(result: dict[str, object]) -> str:
    """The case's verdict, or `close X` when only its closing behaviour
    is wrong."""
    verdict = str(result["behavior"])
    close = result.get("behaviorClose")
    if verdict in ("OK", "UNIMPLEMENTED") and close not in (None, *GOOD):
        verdict = f"close {close}"
    return verdict


def acceptable(agent: str, verdict: str, no_deflate: frozenset[str]) -> bool:
    """Only the permessage-deflate cases (12.*, 13.*) can be UNIMPLEMENTED:
    the right answer of a server run without compression."""
    return verdict in GOOD or (verdict == "UNIMPLEMENTED" and agent in no_deflate)


def summarise(
    index_file: Path, peers: frozenset[str] = frozenset(), no_deflate: frozenset[str] = frozenset()
) -> dict[str, Counter[str]]:
    index = json.loads(index_file.read_text())
    summary: dict[str, Counter[str]] = {}
    for agent, cases in index.items():
        counts: Counter[str] = Counter()
        for case, result in cases.items():
            verdict = verdict_of(result)
            counts[verdict] += 1
            if not acceptable(agent, verdict, no_deflate):
                note = " (peer, for comparison only)" if agent in peers else ""
                print(f"  {agent} {case}: {verdict} / close {result.get('behaviorClose')}{note}")
        summary[agent] = counts
    return summary


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """Terminate each process we started, and kill one that outlives `timeout`."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fuzz_servers(
    args: argparse.Namespace,
    workdir: Path,
    role: str,
    servers: list[dict[str, str]],
) -> None:
    """The fuzzing client against `servers`, reports in reports/<role>/."""
    spec = {
        "outdir": f"./reports/{role}",
        "servers": servers,
        "options": CLOSE_TIMEOUT_OPTIONS,
        "cases": args.cases.split(","),
        "exclude-cases": args.exclude.split(",") if args.exclude else [],
        "exclude-agent-cases": {},
    }
    fuzzer = wstest(args, "fuzzingclient", spec, workdir, log_name=role)
    try:
        if fuzzer.wait(timeout=args.timeout) != 0:
            raise RuntimeError("the fuzzing client failed")
    finally:
        stop([fuzzer])


def run_servers(args: argparse.Namespace, workdir: Path) -> dict[str, Counter[str]]:
    """The fuzzing client against each echo server."""
    servers: list[dict[str, str]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
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
                        str(MAX_MESSAGE_SIZE),
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )
            )
            wait_listening(port)
            servers.append({"agent": f"server-{backend}", "url": f"ws://127.0.0.1:{port}"})
        fuzz_servers(args, workdir, "servers", servers)
    finally:
        stop(procs)
    return summarise(workdir / "reports" / "servers" / "index.json")


def run_asgi(args: argparse.Namespace, workdir: Path) -> dict[str, Counter[str]]:
    """The fuzzing client against uvicorn serving `asgi_echo:app`, once per
    agent (our class, with and without compression; uvicorn's own with
    `--asgi-peers`). Each server's log is `asgi-<agent>.log`."""
    agents = [agent for agent in ASGI_AGENTS if args.asgi_peers or not agent.peer]
    servers: list[dict[str, str]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for agent in agents:
            port = free_port()
            log = (workdir / f"{agent.name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "tests.compliance.asgi_echo:app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--ws-max-size",
                        str(MAX_MESSAGE_SIZE),
                        "--log-level",
                        "warning",
                        *agent.options,
                    ],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()  # (the child has its own copy)
            wait_listening(port)
            servers.append({"agent": agent.name, "url": f"ws://127.0.0.1:{port}"})
        fuzz_servers(args, workdir, "asgi", servers)
    finally:
        stop(procs)
    return summarise(
        workdir / "reports" / "asgi" / "index.json",
        peers=frozenset(agent.name for agent in agents if agent.peer),
        no_deflate=frozenset(agent.name for agent in agents if not agent.deflate),
    )


def run_clients(args: argparse.Namespace, workdir: Path) -> dict[str, Counter[str]]:
    """Each client against the fuzzing server."""
    port = free_port()
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": "./reports/clients",
        "options": CLOSE_TIMEOUT_OPTIONS,
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--autobahn", required=True, help="checkout of autobahn-testsuite")
    parser.add_argument("--python", required=True, help="python of the testsuite's venv")
    parser.add_argument("--cases", default="*")
    parser.add_argument("--exclude", default="", help='such as "12.*,13.*"')
    parser.add_argument(
        "--roles", default="servers,clients", help=f"any of {', '.join(ROLES)}, comma-separated"
    )
    parser.add_argument(
        "--asgi-peers",
        action="store_true",
        help="role asgi: also uvicorn's own --ws classes, for comparison (never fail the run)",
    )
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", help="keep the reports in this folder")
    args = parser.parse_args()
    roles = {role.strip() for role in args.roles.split(",") if role.strip()}
    if unknown := roles - set(ROLES):
        parser.error(f"unknown role(s): {', '.join(sorted(unknown))}")
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="autobahn-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Counter[str]] = {}
    if "servers" in roles:
        results |= run_servers(args, workdir)
    if "clients" in roles:
        results |= run_clients(args, workdir)
    if "asgi" in roles:
        results |= run_asgi(args, workdir)
    peers = {agent.name for agent in ASGI_AGENTS if agent.peer}
    no_deflate = frozenset(agent.name for agent in ASGI_AGENTS if not agent.deflate)
    verdicts = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
    print(f"{'agent':<24}" + "".join(f"{v:>15}" for v in verdicts) + f"{'other':>10}")
    for agent, counts in sorted(results.items()):
        other = sum(n for v, n in counts.items() if v not in verdicts)
        note = "  (peer, for comparison only)" if agent in peers else ""
        print(
            f"{agent:<24}" + "".join(f"{counts[v]:>15}" for v in verdicts) + f"{other:>10}" + note
        )
    if any(results[agent]["UNIMPLEMENTED"] for agent in no_deflate & results.keys()):
        print(
            "(an agent without compression is UNIMPLEMENTED in 12.* and 13.*, as it should be;"
            " those do not fail the run)"
        )
    print(f"reports in {workdir}")
    bad = any(
        n
        for agent, counts in results.items()
        if agent not in peers
        for v, n in counts.items()
        if not acceptable(agent, v, no_deflate)
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
