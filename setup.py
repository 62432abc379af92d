"""Declares the optional compiled parts; everything else is in pyproject.toml.

Two builds of the same source, both optional so that a machine without a C
compiler (or without mypy's mypyc) still installs the package, in pure Python:

- `wsproto_core._speedups`, the C mask accelerator;
- the core itself compiled by mypyc from its typed modules (all but
  `__init__.py`, which picks the build at import: see `_build.py`).

The compiled build records a digest of the sources it was made from
(`_compiled_from.py`, written here), so that a source edited after the
build, as in an editable install, is run as source instead of shadowed by
stale machine code. `WSPROTO_CORE_PURE_PYTHON=1` at build time skips mypyc.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup

sys.path.insert(0, str(Path(__file__).parent / "wsproto_core"))
import _build  # the package's own list of compiled modules, and their digest

PACKAGE = Path(__file__).parent / "wsproto_core"


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
        f'SOURCE_DIGEST = "{_build.source_digest(sources)}"\n'
    )
    try:
        extensions = mypycify(
            [str(path.relative_to(PACKAGE.parent)) for path in [*sources, stamp]],
            group_name="wsproto_core._mypyc",
            opt_level="3",
            debug_level="0",
        )
    except Exception as error:  # a mypyc that cannot compile this source: fall back
        print(f"wsproto_core: mypyc failed ({error}), installing pure Python", file=sys.stderr)
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
