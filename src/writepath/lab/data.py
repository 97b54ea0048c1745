"""Where the lab's data files live (the patch, the config script, the C sources, samples)."""

from __future__ import annotations

import os
from pathlib import Path

#: The files the lab reads from its data folder, by role.
PATCH = "filemap-move-prefaulting-6.12.patch"
KCONFIG_SCRIPT = "kconfig.sh"
BENCH_SOURCE = "bench.c"
PLUGIN_SOURCE = "wp_insns.c"
SAMPLE_LOG = "sample-boot.log"


def data_dir() -> Path:
    """The lab data folder: ``$WRITEPATH_LAB_DATA`` if set, else ``lab/`` at the repository top.

    A checkout (or an editable install) has the folder beside ``src/``; the environment
    variable serves installs that put it elsewhere.
    """
    env = os.environ.get("WRITEPATH_LAB_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "lab"


def data_file(name: str) -> Path:
    return data_dir() / name
