"""Model filesystems, each a ``FileSystem`` table (``writepath.kernel.vfs``)."""

from __future__ import annotations

from writepath.kernel.fs.ext4 import ext4
from writepath.kernel.fs.libfs import ramfs
from writepath.kernel.fs.shmem import tmpfs
from writepath.kernel.fs.xfs import xfs
from writepath.kernel.vfs import FileSystem


def filesystems() -> dict[str, FileSystem]:
    """Each filesystem type the model has, by the name scenarios use."""
    return {"tmpfs": tmpfs(), "ramfs": ramfs(), "ext4": ext4(), "xfs": xfs()}
