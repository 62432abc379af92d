"""Which build runs (wsproto_core/_build.py): the compiled one when it was
built from these very sources, the source otherwise.

The test command runs the suite twice: with WSPROTO_CORE_PURE_PYTHON=1, and
with WSPROTO_CORE_EXPECT_COMPILED=1 where a C compiler is present, so that a
build that silently fell back to Python fails here instead of passing as a
second run of the first pass.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import wsproto_core
from wsproto_core import _build

PACKAGE = Path(wsproto_core.__file__).parent
EXTENSION = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def loaded_from_extensions() -> dict[str, bool]:
    """For each compilable module: was it loaded from machine code?"""
    result = {}
    for path in _build.compiled_sources(PACKAGE):
        module = sys.modules.get(f"wsproto_core.{path.stem}") or importlib.import_module(
            f"wsproto_core.{path.stem}"
        )
        result[path.stem] = (module.__file__ or "").endswith(EXTENSION)
    return result


def test_the_build_that_runs_is_the_one_expected() -> None:
    loaded = loaded_from_extensions()
    assert set(loaded) >= {"reader", "writer", "connection", "masking", "utf8", "http"}
    if os.environ.get("WSPROTO_CORE_EXPECT_COMPILED"):
        assert wsproto_core.COMPILED, wsproto_core.BUILD
    if os.environ.get("WSPROTO_CORE_PURE_PYTHON"):
        assert not wsproto_core.COMPILED
        assert "WSPROTO_CORE_PURE_PYTHON" in wsproto_core.BUILD
    # all or nothing: never a mix of compiled and source modules
    assert set(loaded.values()) == {wsproto_core.COMPILED}, loaded


def test_value_types_stay_ordinary_classes() -> None:
    """Events, PerMessageDeflate and PreparedMessage copy and pickle in
    either build (compiled, a frozen dataclass cannot)."""
    compiled = {path.stem for path in _build.compiled_sources(PACKAGE)}
    for name in ("events", "deflate", "broadcast"):
        assert name not in compiled
        module = importlib.import_module(f"wsproto_core.{name}")
        assert not (module.__file__ or "").endswith(EXTENSION)


# -- choose(), with stand-ins for the stamp module --------------------------------


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return make_package(tmp_path)


@pytest.fixture
def stamp(package: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A compiled stamp in `package`, whose digest the test sets."""
    monkeypatch.delenv("WSPROTO_CORE_PURE_PYTHON", raising=False)
    module = types.ModuleType("stand_in_stamp")
    module.__file__ = str(package / ("_compiled_from" + EXTENSION[0]))
    monkeypatch.setitem(sys.modules, "stand_in_stamp", module)
    return module


def make_package(root: Path) -> Path:
    package = root / "pkg"
    package.mkdir()
    for name in ("__init__.py", "_build.py", "events.py", "reader.py", "writer.py"):
        (package / name).write_text(f"# {name}\n")
    return package


def test_compiled_sources_leave_out_the_chooser_and_the_value_types(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    assert [path.name for path in _build.compiled_sources(package)] == ["reader.py", "writer.py"]


def test_a_matching_stamp_chooses_the_compiled_build(
    package: Path, stamp: types.ModuleType
) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.compiled_sources(package))  # type: ignore[attr-defined]
    assert _build.choose(package, "stand_in_stamp") == (True, "compiled with mypyc")


def test_an_edited_source_makes_the_build_stale(package: Path, stamp: types.ModuleType) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.compiled_sources(package))  # type: ignore[attr-defined]
    (package / "reader.py").write_text("# reader.py, edited\n")
    compiled, why = _build.choose(package, "stand_in_stamp")
    assert not compiled
    assert "changed" in why


def test_an_added_source_makes_the_build_stale(package: Path, stamp: types.ModuleType) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.compiled_sources(package))  # type: ignore[attr-defined]
    (package / "timers.py").write_text("")
    assert _build.choose(package, "stand_in_stamp")[0] is False


def test_the_environment_variable_wins(
    package: Path, stamp: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.compiled_sources(package))  # type: ignore[attr-defined]
    monkeypatch.setenv("WSPROTO_CORE_PURE_PYTHON", "1")
    assert _build.choose(package, "stand_in_stamp")[0] is False


def test_a_stamp_run_as_source_is_no_build(package: Path, stamp: types.ModuleType) -> None:
    """setup.py writes the stamp as a .py before compiling it: if the C
    compile then failed, the .py is all there is."""
    stamp.__file__ = str(package / "_compiled_from.py")
    stamp.SOURCE_DIGEST = _build.source_digest(_build.compiled_sources(package))  # type: ignore[attr-defined]
    assert _build.choose(package, "stand_in_stamp") == (False, "pure Python: not compiled")


def test_a_stamp_of_another_copy_is_no_build(package: Path, stamp: types.ModuleType) -> None:
    """An editable install's finder answers for its own tree even when
    another copy of the package comes first on sys.path."""
    elsewhere = package.parent / "elsewhere"
    elsewhere.mkdir()
    stamp.__file__ = str(elsewhere / ("_compiled_from" + EXTENSION[0]))
    stamp.SOURCE_DIGEST = _build.source_digest(_build.compiled_sources(package))  # type: ignore[attr-defined]
    assert _build.choose(package, "stand_in_stamp") == (False, "pure Python: not compiled")


def test_no_stamp_is_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSPROTO_CORE_PURE_PYTHON", raising=False)
    package = make_package(tmp_path)
    assert _build.choose(package, "no_such_stamp_module") == (False, "pure Python: not compiled")


def test_the_source_finder_leaves_only_the_compiled_modules(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    finder = _build._SourceFinder(package, frozenset({"reader.py"}))
    spec = finder.find_spec("wsproto_core.writer", None)
    assert spec is not None
    assert spec.origin == str(package / "writer.py")
    events = finder.find_spec("wsproto_core.events", None)  # never compiled
    assert events is not None
    assert events.origin == str(package / "events.py")
    assert finder.find_spec("wsproto_core.reader", None) is None  # compiled
    assert finder.find_spec("wsproto_core", None) is None
    assert finder.find_spec("wsproto_core.__init__", None) is None
    assert finder.find_spec("writer", None) is None


# -- the real build, in a fresh interpreter ------------------------------------------


def import_in_subprocess(path: Path, **env: str) -> list[str]:
    """COMPILED, BUILD and the reader's file, as a fresh interpreter sees them."""
    code = (
        "import wsproto_core, wsproto_core.reader as r;"
        "print(wsproto_core.COMPILED); print(wsproto_core.BUILD); print(r.__file__)"
    )
    environ = {k: v for k, v in os.environ.items() if k != "WSPROTO_CORE_PURE_PYTHON"}
    environ.update(PYTHONPATH=str(path), **env)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=environ,
        cwd=path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.splitlines()


needs_a_build = pytest.mark.skipif(
    not any(path.name.endswith(EXTENSION) for path in PACKAGE.glob("reader*")),
    reason="no compiled build here (the compiled pass checks that there is one)",
)


@needs_a_build
def test_a_copy_of_the_build_runs_compiled_until_a_source_is_edited(tmp_path: Path) -> None:
    copy = tmp_path / "wsproto_core"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    compiled, _, reader = import_in_subprocess(tmp_path)
    assert compiled == "True"
    assert reader.endswith(EXTENSION)

    with (copy / "reader.py").open("a") as source:
        source.write("\n# edited after the build\n")
    compiled, why, reader = import_in_subprocess(tmp_path)
    assert compiled == "False"
    assert "changed" in why
    assert reader == str(copy / "reader.py")


@needs_a_build
def test_the_environment_variable_forces_the_source(tmp_path: Path) -> None:
    copy = tmp_path / "wsproto_core"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    compiled, why, reader = import_in_subprocess(tmp_path, WSPROTO_CORE_PURE_PYTHON="1")
    assert compiled == "False"
    assert "WSPROTO_CORE_PURE_PYTHON" in why
    assert reader == str(copy / "reader.py")
