"""Declares the optional compiled parts; everything else is in pyproject.toml.

Two builds of the same source, both optional so that a machine without a C
compiler (or without mypy's mypyc) still installs the package, in pure Python:

- `wsproto_core._speedups`, the C accelerators (the mask, the reader's
  event constructor);
- the core itself compiled by mypyc from its typed modules (all but
  `__init__.py`, `_build.py`, which picks the build at import, and the
  value types an application keeps: `_build._NEVER_COMPILED`).

The compiled build records a digest of the sources it was made from
(`_compiled_from.py`, written here), so that a source edited after the
build, as in an editable install, is run as source instead of shadowed by
stale machine code. `WSPROTO_CORE_PURE_PYTHON=1` at build time skips mypyc
(the C accelerators are still built; set it at run time to leave them out).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import Extension, setup

PACKAGE = Path(__file__).parent / "wsproto_core"

# The package's own list of compiled modules, and their digest (loaded by
# path: putting the package's directory on sys.path would let its http.py
# shadow the standard library's for the rest of the build).
_spec = importlib.util.spec_from_file_location("_wsproto_core_build", PACKAGE / "_build.py")
assert _spec is not None
assert _spec.loader is not None
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)


def compiled_core() -> list[Extension]:
    if os.environ.get("WSPROTO_CORE_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # pragma: no cover - mypy is a build requirement
        print("wsproto_core: mypyc not available, installing pure Python", file=sys.stderr)
        return []
    sources = _build.compiled_sources(PACKAGE)
    stamp = PACKAGE / _build.STAMP_MODULE
    stamp.write_text(
        '"""Written by setup.py: the digest of the sources the compiled build was made from."""\n\n'
        f'SOURCE_DIGEST = "{_build.source_digest(_build.digested_sources(PACKAGE))}"\n'
    )
    try:
        extensions = mypycify(
            [str(path.relative_to(PACKAGE.parent)) for path in [*sources, stamp]],
            group_name="wsproto_core._mypyc",
            opt_level="3",
            debug_level="0",
        )
    except (Exception, SystemExit) as error:  # mypy's errors end in sys.exit: fall back
        print(f"wsproto_core: mypyc failed ({error!r}), installing pure Python", file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True  # a failed C compile leaves the pure-Python build
    return extensions


setup(
    ext_modules=[
        Extension(
            "wsproto_core._speedups",
            sources=["wsproto_core/_speedups.c"],
            optional=True,  # no compiler: install anyway, masking.py falls back to Python
            extra_compile_args=["-O3"],
        ),
        *compiled_core(),
    ]
)
