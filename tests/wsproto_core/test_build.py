"""Which build runs (wsproto_core/_build.py): the compiled one when it was
built from these very sources, the source otherwise.

The test command runs the suite twice: with WSPROTO_CORE_PURE_PYTHON=1, and
with WSPROTO_CORE_EXPECT_COMPILED=1 where a C compiler is present, so that a
build that silently fell back to Python fails here instead of passing as a
second run of the first pass.
"""

from __future__ import annotations

import copy
import importlib.abc
import importlib.machinery
import os
import pickle
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import wsproto_core
from wsproto_core import (
    ClientConnection,
    CloseReceived,
    HandshakeAccepted,
    HandshakeRequest,
    PerMessageDeflate,
    ServerConnection,
    TextMessage,
    _build,
)

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
    assert set(loaded) >= {"reader", "writer", "connection", "masking", "utf8", "handshake"}
    if os.environ.get("WSPROTO_CORE_EXPECT_COMPILED"):
        assert wsproto_core.COMPILED, wsproto_core.BUILD
    if os.environ.get("WSPROTO_CORE_PURE_PYTHON"):
        assert not wsproto_core.COMPILED
        assert "WSPROTO_CORE_PURE_PYTHON" in wsproto_core.BUILD
    # all or nothing: never a mix of compiled and source modules
    assert set(loaded.values()) == {wsproto_core.COMPILED}, loaded


VALUE_MODULES = ("events", "deflate", "broadcast", "extensions", "http")


def test_value_types_stay_ordinary_classes() -> None:
    """What an application keeps (events and what they hold, settings,
    prepared messages) is never compiled: see _build._NEVER_COMPILED."""
    compiled = {path.stem for path in _build.compiled_sources(PACKAGE)}
    for name in VALUE_MODULES:
        assert name not in compiled
        module = importlib.import_module(f"wsproto_core.{name}")
        assert not (module.__file__ or "").endswith(EXTENSION)


def kept_values() -> list[object]:
    """A real handshake's events, and the other values an application keeps."""
    client = ClientConnection("example.com", "/chat?x=1", compression=PerMessageDeflate())
    server = ServerConnection(compression=PerMessageDeflate())
    [request] = server.receive_data(client.data_to_send())
    server.accept()
    [accepted] = client.receive_data(server.data_to_send())
    return [
        request,
        accepted,
        PerMessageDeflate(),
        TextMessage(data="é"),
        CloseReceived(code=1000, reason="bye"),
    ]


def test_kept_values_copy_and_pickle_in_this_build() -> None:
    values = kept_values()
    assert isinstance(values[0], HandshakeRequest)
    assert isinstance(values[1], HandshakeAccepted)
    assert values[0].extensions  # an ExtensionOffer inside, and Headers
    for value in values:
        assert copy.copy(value) == value
        assert copy.deepcopy(value) == value
        assert pickle.loads(pickle.dumps(value)) == value


PICKLE_KEPT_VALUES = (
    "import pickle, sys; sys.path.insert(0, {root!r});"
    "from tests.wsproto_core.test_build import kept_values;"
    "values = kept_values(); sys.stdout.buffer.write(pickle.dumps((values, repr(values))))"
)


@pytest.mark.parametrize("other", ["source", "compiled"])
def test_a_pickle_from_either_build_loads_the_same_here(other: str) -> None:
    """Processes that chose different builds (one without a compiler, say)
    exchange events: what one pickles, the other loads equal."""
    environ = {k: v for k, v in os.environ.items() if k != "WSPROTO_CORE_PURE_PYTHON"}
    if other == "source":
        environ["WSPROTO_CORE_PURE_PYTHON"] = "1"
    code = PICKLE_KEPT_VALUES.format(root=str(Path(__file__).parents[2]))
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, check=True, timeout=60
    )
    values, seen_there = pickle.loads(out.stdout)
    assert repr(values) == seen_there  # (a real handshake: its key is random)
    assert [type(value) for value in values] == [type(value) for value in kept_values()]
    assert pickle.loads(pickle.dumps(values)) == values


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


def test_an_editors_lock_file_is_no_source(package: Path) -> None:
    (package / ".#reader.py").symlink_to("user@host.1234:1700000000")  # dangling, as emacs makes
    (package / "notes").mkdir()
    assert [path.name for path in _build.compiled_sources(package)] == ["reader.py", "writer.py"]
    assert ".#reader.py" not in {path.name for path in _build.digested_sources(package)}


def test_a_dotfile_is_no_source_even_when_it_is_a_regular_file(package: Path) -> None:
    (package / ".reader.py").write_text("# an editor's backup\n")
    (package / "._writer.py").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata on a shared disk
    assert [path.name for path in _build.compiled_sources(package)] == ["reader.py", "writer.py"]
    assert {path.name for path in _build.digested_sources(package)} == {
        "events.py",
        "reader.py",
        "writer.py",
    }


def test_the_digest_covers_the_types_compiled_against(package: Path) -> None:
    """Compiled code is specialised to the types of the modules it uses,
    compiled or not: an edited annotation there makes the build stale."""
    names = {path.name for path in _build.digested_sources(package)}
    assert names == {"events.py", "reader.py", "writer.py"}
    (package / "_speedups.pyi").write_text("def apply_mask() -> None: ...\n")
    assert "_speedups.pyi" in {path.name for path in _build.digested_sources(package)}


def give_extensions(package: Path, *stems: str) -> None:
    for stem in stems:
        (package / (stem + EXTENSION[0])).write_bytes(b"")


def test_a_matching_stamp_chooses_the_compiled_build(
    package: Path, stamp: types.ModuleType
) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    give_extensions(package, "reader", "writer")
    assert _build.choose(package, "stand_in_stamp") == (True, "compiled with mypyc")


def test_a_compiled_module_gone_makes_the_build_incomplete(
    package: Path, stamp: types.ModuleType
) -> None:
    """Never a mix: without reader's machine code, the source runs, all of it."""
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    give_extensions(package, "writer")
    compiled, why = _build.choose(package, "stand_in_stamp")
    assert not compiled
    assert "lacks reader" in why


def test_every_compiled_module_missing_is_named(package: Path, stamp: types.ModuleType) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    assert _build.choose(package, "stand_in_stamp") == (
        False,
        "pure Python: the compiled build lacks reader, writer (reinstall)",
    )


def test_an_unreadable_source_chooses_the_source_without_raising(
    package: Path, stamp: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    give_extensions(package, "reader", "writer")

    def unreadable(path: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    compiled, why = _build.choose(package, "stand_in_stamp")
    assert not compiled
    assert "could not be read" in why


def test_an_edited_source_makes_the_build_stale(package: Path, stamp: types.ModuleType) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    (package / "reader.py").write_text("# reader.py, edited\n")
    give_extensions(package, "reader", "writer")
    assert _build.choose(package, "stand_in_stamp") == (
        False,
        "pure Python: the sources changed after the compiled build (reinstall)",
    )


def test_a_stamp_without_a_digest_is_a_stale_build(package: Path, stamp: types.ModuleType) -> None:
    """(an older build's stamp, say): the source runs, and choose does not raise"""
    give_extensions(package, "reader", "writer")
    assert not hasattr(stamp, "SOURCE_DIGEST")
    assert _build.choose(package, "stand_in_stamp") == (
        False,
        "pure Python: the sources changed after the compiled build (reinstall)",
    )


def test_an_added_source_makes_the_build_stale(package: Path, stamp: types.ModuleType) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    (package / "timers.py").write_text("")
    assert _build.choose(package, "stand_in_stamp")[0] is False


def test_the_environment_variable_wins(
    package: Path, stamp: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    give_extensions(package, "reader", "writer")
    assert _build.choose(package, "stand_in_stamp") == (True, "compiled with mypyc")
    monkeypatch.setenv("WSPROTO_CORE_PURE_PYTHON", "1")
    assert _build.choose(package, "stand_in_stamp") == (
        False,
        "pure Python: WSPROTO_CORE_PURE_PYTHON is set",
    )


def test_a_stamp_run_as_source_is_no_build(package: Path, stamp: types.ModuleType) -> None:
    """setup.py writes the stamp as a .py before compiling it: if the C
    compile then failed, the .py is all there is."""
    stamp.__file__ = str(package / "_compiled_from.py")
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    assert _build.choose(package, "stand_in_stamp") == (False, "pure Python: not compiled")


def test_a_stamp_of_another_copy_is_no_build(package: Path, stamp: types.ModuleType) -> None:
    """An editable install's finder answers for its own tree even when
    another copy of the package comes first on sys.path."""
    elsewhere = package.parent / "elsewhere"
    elsewhere.mkdir()
    stamp.__file__ = str(elsewhere / ("_compiled_from" + EXTENSION[0]))
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    assert _build.choose(package, "stand_in_stamp") == (False, "pure Python: not compiled")


def test_a_stamp_with_no_file_is_no_build(package: Path, stamp: types.ModuleType) -> None:
    """(a built-in or frozen module has no __file__): choose does not raise"""
    del stamp.__file__
    stamp.SOURCE_DIGEST = _build.source_digest(_build.digested_sources(package))  # type: ignore[attr-defined]
    give_extensions(package, "reader", "writer")
    assert _build.choose(package, "stand_in_stamp") == (False, "pure Python: not compiled")


def test_no_stamp_is_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSPROTO_CORE_PURE_PYTHON", raising=False)
    package = make_package(tmp_path)
    assert _build.choose(package, "no_such_stamp_module") == (False, "pure Python: not compiled")


def test_the_source_finder_refuses_machine_code_without_source(tmp_path: Path) -> None:
    """A module removed from the package leaves its extension behind in an
    editable checkout (it is not tracked): it must not run."""
    package = make_package(tmp_path)
    give_extensions(package, "reader", "removed_module", "_speedups", "_mypyc__mypyc")
    finder = _build._SourceFinder(package, frozenset({"reader.py"}))
    with pytest.raises(ModuleNotFoundError) as raised:
        finder.find_spec("wsproto_core.removed_module", None)
    assert str(raised.value) == "No module named 'wsproto_core.removed_module' (a stale build)"
    assert raised.value.name == "wsproto_core.removed_module"
    assert finder.find_spec("wsproto_core._speedups", None) is None  # left to the default
    assert finder.find_spec("wsproto_core._mypyc__mypyc", None) is None


def test_loading_again_replaces_the_finder(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    before = list(sys.meta_path)
    try:
        _build.load_modules(package, compiled=False)
        _build.load_modules(package, compiled=False)
        finders = [f for f in sys.meta_path if isinstance(f, _build._SourceFinder)]
        assert len(finders) == 1
    finally:
        sys.meta_path[:] = before


def the_source_finder() -> _build._SourceFinder:
    [finder] = [f for f in sys.meta_path if isinstance(f, _build._SourceFinder)]
    return finder


@pytest.mark.parametrize("compiled", [False, True])
def test_only_the_compiled_build_leaves_its_modules_to_the_default_finder(
    tmp_path: Path, compiled: bool
) -> None:
    """The compiled build's modules, and its stamp, load as machine code when
    it runs; when the source runs, every module loads from its `.py`."""
    package = make_package(tmp_path)
    (package / _build.STAMP_MODULE).write_text('SOURCE_DIGEST = ""\n')
    before = list(sys.meta_path)
    try:
        _build.load_modules(package, compiled=compiled)
        finder = the_source_finder()
        origins = {}
        for stem in ("reader", "writer", "events", "_compiled_from"):
            spec = finder.find_spec(f"wsproto_core.{stem}", None)
            origins[stem] = None if spec is None else spec.origin
    finally:
        sys.meta_path[:] = before
    source = {stem: str(package / f"{stem}.py") for stem in origins}
    if compiled:
        assert origins == {**source, "reader": None, "writer": None, "_compiled_from": None}
    else:
        assert origins == source


class ClaimsEveryModule(importlib.abc.MetaPathFinder):
    """Stands in for a finder that would load a module's machine code."""

    def find_spec(
        self, fullname: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec:
        return importlib.machinery.ModuleSpec(fullname, None, origin="machine code")


def test_the_source_finder_comes_before_every_other_finder(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    before = list(sys.meta_path)
    try:
        sys.meta_path.insert(0, ClaimsEveryModule())
        _build.load_modules(package, compiled=False)
        # what the import system does: the first finder with an answer wins
        spec = next(
            spec
            for finder in sys.meta_path
            if (spec := finder.find_spec("wsproto_core.writer", None)) is not None
        )
    finally:
        sys.meta_path[:] = before
    assert spec.origin == str(package / "writer.py")


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


def a_current_build_is_here() -> bool:
    """Is there a compiled build of these very sources beside them? (Not in
    mutmut's copy, whose sources are rewritten; and not without a compiler,
    where the compiled pass does not run.)"""
    stamp = PACKAGE / _build.STAMP_MODULE
    if not stamp.is_file():
        return False
    digest = _build.source_digest(_build.digested_sources(PACKAGE))
    return f'SOURCE_DIGEST = "{digest}"' in stamp.read_text() and all(
        any((PACKAGE / (path.stem + suffix)).is_file() for suffix in EXTENSION)
        for path in _build.compiled_sources(PACKAGE)
    )


needs_a_build = pytest.mark.skipif(
    not a_current_build_is_here(),
    reason="no compiled build of these sources here (the compiled pass requires one)",
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
