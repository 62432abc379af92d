"""Which build of the core runs: the one mypyc compiled, or the source.

Both come from the same modules. `setup.py` compiles every module of the
package but `__init__.py`, this one and the few in `_NEVER_COMPILED`, and
stamps the build with a digest of those sources (`_compiled_from.py`).
`__init__` asks `choose` before it imports anything else, then
`load_modules` makes the modules that are not to run compiled load from
their `.py` files although compiled ones may sit beside them (Python would
otherwise prefer those).

The source runs when `WSPROTO_CORE_PURE_PYTHON` is set (one of the tests'
two passes, or a user debugging), when nothing was compiled, and when the
sources no longer match the compiled build: an editable install whose files
were edited after it was built would otherwise run yesterday's code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_NAME = "wsproto_core"
STAMP_MODULE = "_compiled_from.py"
_NEVER_COMPILED = frozenset(
    {
        "__init__.py",
        "_build.py",
        STAMP_MODULE,
        # The value types an application keeps (events, and what they hold:
        # Headers, ExtensionOffer; PerMessageDeflate, PreparedMessage) stay
        # ordinary classes. Compiled, a frozen dataclass can no longer be
        # copied or pickled, and a pickle made by one build would load
        # wrongly in the other. None is on a hot path: the reader makes
        # events with `_speedups.Constructor`, headers are read once.
        "broadcast.py",
        "deflate.py",
        "events.py",
        "extensions.py",
        "http.py",
    }
)


# Extension modules that have no source: the C accelerators, and the
# library mypyc puts every compiled module's code in.
_ONLY_COMPILED = frozenset({"_speedups", "_mypyc__mypyc"})
_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _files(package: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The package's regular files with these endings, in a fixed order;
    not dotfiles (an editor's lock file, `.#reader.py`, is a dangling link)."""
    return sorted(
        path
        for path in package.iterdir()
        if path.name.endswith(suffixes) and not path.name.startswith(".") and path.is_file()
    )


def compiled_sources(package: Path) -> list[Path]:
    """The modules the compiled build is made of."""
    return [path for path in _files(package, (".py",)) if path.name not in _NEVER_COMPILED]


def digested_sources(package: Path) -> list[Path]:
    """What the compiled code depends on: the modules it is made of, and
    the types it was compiled against (the other modules and the stubs)."""
    skipped = {"__init__.py", "_build.py", STAMP_MODULE}
    return [path for path in _files(package, (".py", ".pyi")) if path.name not in skipped]


def source_digest(sources: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _is_extension(module: ModuleType) -> bool:
    return (getattr(module, "__file__", None) or "").endswith(_EXTENSIONS)


def _has_extension(package: Path, stem: str) -> bool:
    return any((package / (stem + suffix)).is_file() for suffix in _EXTENSIONS)


def choose(package: Path, stamp_name: str = f"{PACKAGE_NAME}._compiled_from") -> tuple[bool, str]:
    """(run the compiled build?, why), as `__init__` asks it on import."""
    if os.environ.get("WSPROTO_CORE_PURE_PYTHON"):
        return False, "pure Python: WSPROTO_CORE_PURE_PYTHON is set"
    try:
        stamp = importlib.import_module(stamp_name)
    except ImportError:  # never built, or built without a working compiler
        return False, "pure Python: not compiled"
    if not _is_extension(stamp) or Path(stamp.__file__ or "").parent != package:
        # (an editable install's finder can answer for another copy of the
        # package on sys.path: its stamp says nothing about this one)
        return False, "pure Python: not compiled"
    try:
        digest = source_digest(digested_sources(package))
    except OSError as error:
        return False, f"pure Python: the sources could not be read ({error})"
    if getattr(stamp, "SOURCE_DIGEST", None) != digest:
        return False, "pure Python: the sources changed after the compiled build (reinstall)"
    missing = [
        path.stem for path in compiled_sources(package) if not _has_extension(package, path.stem)
    ]
    if missing:
        return False, f"pure Python: the compiled build lacks {', '.join(missing)} (reinstall)"
    return True, "compiled with mypyc"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the package's modules as source, ahead of the default finder
    (which tries extension modules first), but for those in `compiled`;
    refuses an extension module that has no source (left by an older build
    of a module since removed), but for `_ONLY_COMPILED`."""

    def __init__(self, package: Path, compiled: frozenset[str]) -> None:
        sources = _files(package, (".py",))
        self._files = {
            f"{PACKAGE_NAME}.{path.stem}": path
            for path in sources
            if path.name != "__init__.py" and path.name not in compiled
        }
        stems = {path.stem for path in sources} | _ONLY_COMPILED
        self._stale = {
            f"{PACKAGE_NAME}.{path.name.split('.', 1)[0]}"
            for path in _files(package, _EXTENSIONS)
            if path.name.split(".", 1)[0] not in stems
        }

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self._stale:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (a stale build)", name=fullname
            )
        file = self._files.get(fullname)
        return None if file is None else importlib.util.spec_from_file_location(fullname, file)


def load_modules(package: Path, *, compiled: bool) -> None:
    """Make the package's modules load from source, but for the compiled
    build's own when it runs (a reload of the package replaces the finder)."""
    machine_code = {path.name for path in compiled_sources(package)} | {STAMP_MODULE}
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _SourceFinder)]
    sys.meta_path.insert(0, _SourceFinder(package, frozenset(machine_code if compiled else ())))
