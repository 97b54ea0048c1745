"""Where the data folders are: the scenario catalogue, the workloads and the CPU profiles.

A source checkout (an editable install) reads its own ``scenarios/``, ``workloads/`` and
``profiles/``. A built wheel carries copies of them in ``writepath/_data/`` (``setup.py`` puts
them there; the checkout's folders stay the one source). Without either, the current
directory's folder of that name.
"""

from __future__ import annotations

from pathlib import Path

#: The folders a wheel carries, by name.
DATA_FOLDERS = ("scenarios", "workloads", "profiles")


def data_dir(name: str) -> Path:
    """The folder ``name`` (one of DATA_FOLDERS): the checkout's, else the wheel's copy, else
    the current directory's."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"no data folder {name!r}")
    package = Path(__file__).resolve().parent
    # A checkout's package sits in src/; an installed one in site-packages (or a --target
    # folder), whose parent's folders are nobody's catalogue.
    checkout = package.parents[1] / name if package.parent.name == "src" else None
    for candidate in (checkout, package / "_data" / name):
        if candidate is not None and candidate.is_dir():
            return candidate
    return Path(name)
