"""Where the lab's data files live (the patch, the config script, the C sources, samples).

They are package data of ``writepath.lab`` (``src/writepath/lab/data/``), so a checkout, an
editable install and a wheel all find them through ``importlib.resources``; the wheel carries
them because pyproject.toml lists them under ``[tool.setuptools.package-data]``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: The files the lab reads from its data folder, by role.
PATCH = "filemap-move-prefaulting-6.12.patch"
KCONFIG_SCRIPT = "kconfig.sh"
BENCH_SOURCE = "bench.c"
PLUGIN_SOURCE = "wp_insns.c"
SAMPLE_LOG = "sample-boot.log"
#: Every file a wheel must carry (tests check each is found).
DATA_FILES = (PATCH, KCONFIG_SCRIPT, BENCH_SOURCE, PLUGIN_SOURCE, SAMPLE_LOG)

#: Where data is copied when the package is not plain files on disk (a zip import).
EXTRACT_DIR = Path.home() / ".cache" / "writepath-lab" / "data"


def data_dir() -> Path:
    """The lab data folder: ``$WRITEPATH_LAB_DATA`` if set, else the package's ``data/``.

    The folder's files are handed to sh, gcc and patch, so it must be a real directory: when
    the package is imported from a zip, its data is copied out to EXTRACT_DIR first.
    """
    env = os.environ.get("WRITEPATH_LAB_DATA")
    if env:
        return Path(env)
    folder = resources.files("writepath.lab").joinpath("data")
    if isinstance(folder, Path):
        return folder
    EXTRACT_DIR.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        (EXTRACT_DIR / name).write_bytes(folder.joinpath(name).read_bytes())
    return EXTRACT_DIR


def data_file(name: str) -> Path:
    return data_dir() / name
