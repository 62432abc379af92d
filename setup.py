"""Only here to declare the optional C accelerator; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wsproto_core._speedups",
            sources=["wsproto_core/_speedups.c"],
            optional=True,  # no compiler: install anyway, masking.py falls back to Python
            extra_compile_args=["-O3"],
        )
    ]
)
