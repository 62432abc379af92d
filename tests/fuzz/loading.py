"""Importing the modules of fuzz/ from the tests: the harnesses import
their `_common` as a top-level module, so fuzz/ goes at the END of the path
(no name in it can shadow another module), and each is imported plainly
(not instrumented: under pytest `_common` leaves the code under test as
coverage.py sees it), under a name of its own."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
if str(FUZZ) not in sys.path:
    sys.path.append(str(FUZZ))


def harness(name: str) -> ModuleType:
    """fuzz/<name>.py (a harness, run.py, make_corpus.py), imported once."""
    qualified = f"fuzz_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, FUZZ / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]
