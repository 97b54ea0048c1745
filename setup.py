"""Build hook for the mypyc-compiled model.

A plain install (``pip install .`` or ``-e .``) is pure Python and ignores this file's only
job. With ``WRITEPATH_MYPYC=1`` the model (``writepath.kernel``, every module of it) and the
scheduler that drives it (``writepath.sched``) are compiled by mypyc from the same source, for
the explorer, sweeps and cost model, whose inner loop they are. mypy must be importable in the
build environment, so build without isolation:

    pip install mypy setuptools
    WRITEPATH_MYPYC=1 pip install --no-build-isolation .

An editable install is never compiled: compiled modules beside the sources would hide every
edit to them.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"


def compiled_modules() -> list[str]:
    """The source files mypyc compiles, relative to this file."""
    kernel = sorted((SRC / "writepath" / "kernel").rglob("*.py"))
    files = [*kernel, SRC / "writepath" / "sched.py"]
    return [str(f.relative_to(HERE)) for f in files]


def ext_modules() -> list[object]:
    if os.environ.get("WRITEPATH_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    return list(mypycify(compiled_modules(), opt_level="3"))


setup(ext_modules=ext_modules())
