"""The fuzz harnesses (fuzz/*.py) as part of the normal suite.

Two things are checked: every harness accepts its whole committed seed
corpus in-process (the seeds are the valid inputs of each kind, so this is
also a quick test of the invariants on meaningful input), and each one runs
for a fixed budget under atheris/libFuzzer in a subprocess and exits 0, so
that a harness that no longer starts, or a bug that the fuzzer finds within
seconds, fails the suite. The budget is small (`BRIEF_RUNS`); long runs are
`python fuzz/run.py --long` (see fuzz/README.md).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import atheris  # noqa: F401 - the suite needs it (the test extra installs it)
import pytest

from .loading import FUZZ, harness

CORPUS = FUZZ / "corpus"

# Executions per harness in the subprocess, seeds included: about one to
# three seconds each on one core, most of it Python's start and atheris
# instrumenting the imports.
BRIEF_RUNS = 1500


_run = harness("run")
HARNESSES = _run.HARNESSES
command = _run.command


def seeds(name: str) -> Iterator[Path]:
    return iter(sorted((CORPUS / name).iterdir()))


@pytest.mark.parametrize("name", HARNESSES)
def test_seed_corpus_passes(name: str) -> None:
    test_one_input = harness(name).TestOneInput
    files = list(seeds(name))
    assert len(files) >= 5, f"fuzz/corpus/{name} needs seeds"
    for path in files:
        try:
            test_one_input(path.read_bytes())
        except Exception as error:
            raise AssertionError(f"seed {path.name} of {name} fails") from error


def test_corpus_is_reproducible(tmp_path: Path) -> None:
    """The committed corpus is what fuzz/make_corpus.py writes."""
    make_corpus = harness("make_corpus")
    make_corpus.main(["--out", str(tmp_path)])
    for name in HARNESSES:
        made = {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()}
        committed = {p.name: p.read_bytes() for p in seeds(name)}
        assert made == committed, f"fuzz/corpus/{name} differs: run fuzz/make_corpus.py"


@pytest.mark.parametrize("name", HARNESSES)
def test_brief_fuzzing(name: str, tmp_path: Path) -> None:
    """libFuzzer from the seed corpus for `BRIEF_RUNS` executions; new
    inputs go to a temporary directory, so the committed corpus is only read."""
    work, crashes = tmp_path / "work", tmp_path / "crashes"
    work.mkdir()
    crashes.mkdir()
    args = command(name, runs=BRIEF_RUNS, seconds=None, work=work, crashes=crashes, extra=[])
    done = subprocess.run(
        args, capture_output=True, text=True, errors="replace", timeout=110, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "DONE" in output, output[-2000:]
    assert not list(crashes.iterdir())
