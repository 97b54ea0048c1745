"""Build hooks: the data folders a wheel carries, and the mypyc-compiled model.

A wheel carries copies of the checkout's ``scenarios/``, ``workloads/`` and ``profiles/`` in
``writepath/_data/`` (``writepath.datadirs`` finds them), so an installed writepath has its
catalogue wherever it runs; an editable install reads the checkout's own folders.

A plain install (``pip install .`` or ``-e .``) is pure Python. With ``WRITEPATH_MYPYC=1`` the
model (``writepath.kernel``, every module of it) and the scheduler that drives it
(``writepath.sched``) are compiled by mypyc from the same source, for the explorer, sweeps and
cost model, whose inner loop they are. mypy must be importable in the build environment, so
build without isolation:

    pip install mypy setuptools
    WRITEPATH_MYPYC=1 pip install --no-build-isolation .

An editable install is refused with ``WRITEPATH_MYPYC=1``: compiled modules beside the sources
would hide every edit to them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"


def compiled_modules() -> list[str]:
    """The source files mypyc compiles, relative to this file."""
    kernel = sorted((SRC / "writepath" / "kernel").rglob("*.py"))
    files = [*kernel, SRC / "writepath" / "sched.py"]
    return [str(f.relative_to(HERE)) for f in files]


#: The checkout's data folders a wheel carries (writepath.datadirs.DATA_FOLDERS).
DATA_FOLDERS = ("scenarios", "workloads", "profiles")


class BuildPyWithData(build_py):
    """build_py, then the data folders copied into the built package as writepath/_data/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders themselves
        for name in DATA_FOLDERS:
            target = Path(self.build_lib) / "writepath" / "_data" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(HERE / name, target, ignore=shutil.ignore_patterns("__pycache__"))


def ext_modules() -> list[object]:
    if os.environ.get("WRITEPATH_MYPYC") != "1":
        return []
    # How setuptools' PEP 660 hook, and an in-place build_ext, run this file.
    if "editable_wheel" in sys.argv or "--inplace" in sys.argv or "-i" in sys.argv:
        raise SystemExit("WRITEPATH_MYPYC=1 builds a wheel; an editable install stays Python")
    if not {"bdist_wheel", "build", "build_ext", "install"} & set(sys.argv):
        return []  # metadata only (dist_info, egg_info): no need to compile for it
    from mypyc.build import mypycify

    return list(mypycify(compiled_modules(), opt_level="3"))


setup(ext_modules=ext_modules(), cmdclass={"build_py": BuildPyWithData})
