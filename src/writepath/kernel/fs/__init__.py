"""Model filesystems, each a ``FileSystem`` table (``writepath.kernel.vfs``)."""

from __future__ import annotations

from typing import Final

from writepath.kernel.fs.btrfs import btrfs
from writepath.kernel.fs.ext2 import ext2
from writepath.kernel.fs.ext4 import ext4, ext4_journal, ext4_journal_2015, ext4_nodelalloc
from writepath.kernel.fs.fuse import fuse
from writepath.kernel.fs.gfs2 import gfs2
from writepath.kernel.fs.libfs import ramfs
from writepath.kernel.fs.orangefs import orangefs, orangefs_2025
from writepath.kernel.fs.shmem import tmpfs
from writepath.kernel.fs.shmem_huge import tmpfs_huge
from writepath.kernel.fs.xfs import xfs
from writepath.kernel.vfs import FileSystem


def filesystems() -> dict[str, FileSystem]:
    """Each filesystem type the model has, by the name scenarios use."""
    return {
        "tmpfs": tmpfs(),
        "ramfs": ramfs(),
        "ext4": ext4(),
        "xfs": xfs(),
        "ext2": ext2(),
        "ext4-nodelalloc": ext4_nodelalloc(),
        "ext4-journal": ext4_journal(),
        "btrfs": btrfs(),
        "fuse": fuse(),
        "tmpfs-huge": tmpfs_huge(),
        "ext4-journal-2015": ext4_journal_2015(),
        "orangefs": orangefs(),
        "orangefs-2025": orangefs_2025(),
        "gfs2": gfs2(),
    }


#: The buffered write loop each filesystem runs (the keys of filemap.LOOP_FORMS).
WRITE_LOOP: Final = {
    "tmpfs": "generic_perform_write",
    "tmpfs-huge": "generic_perform_write",
    "ramfs": "generic_perform_write",
    "ext4": "generic_perform_write",
    "ext4-nodelalloc": "generic_perform_write",
    "ext4-journal": "generic_perform_write",
    "ext2": "generic_perform_write",  # served by the ext4 driver (fs/ext2.py)
    "xfs": "iomap_write_iter",
    "btrfs": "btrfs_buffered_write",
    "fuse": "fuse_perform_write",
    "ext4-journal-2015": "generic_perform_write",
    "orangefs": "generic_perform_write",
    "orangefs-2025": "generic_perform_write",
    "gfs2": "generic_perform_write",  # inside gfs2_file_buffered_write()'s retry loop
}

#: Filesystems that exist only in the model: old forms of a filesystem, kept to run a historical
#: bug against today's write loop, and orangefs (it needs an OrangeFS server, which this machine
#: does not run) and gfs2 (its 2021 buffered write loop; the oracle does not make gfs2 file
#: systems). The oracle cannot mount them and ``diff`` skips them.
MODEL_ONLY: Final = frozenset({"ext4-journal-2015", "orangefs", "orangefs-2025", "gfs2"})
