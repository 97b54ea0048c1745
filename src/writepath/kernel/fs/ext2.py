"""ext2 as this machine's kernel serves it: by the ext4 driver (CONFIG_EXT4_USE_FOR_EXT2).

The kernel here is built without CONFIG_EXT2_FS; ``mount -t ext2`` of an ext2 image logs
"EXT4-fs: mounting ext2 file system using the ext4 subsystem", the mount appears under
/sys/fs/ext4/, and its files are ext4 inodes without the extents flag. So the write path is
ext4's without delayed allocation (``writepath.kernel.fs.ext4``'s ext4_aops: the driver turns
delalloc on by default only for a superblock that is not ext2 or ext3, fs/ext4/super.c; so the
kernel fires ext4_write_begin/ext4_write_end here), with large folios, which
``ext4_should_enable_large_folio()`` does not tie to extents; and the size limit differs:
a block-mapped (indirect) file ends at ``s_bitmap_maxbytes``, which ``ext4_write_checks()``
enforces for a file without the extents flag (fs/ext4/file.c and fs/ext4/super.c,
``ext4_max_bitmap_size()``, v6.18). mkfs.ext2 does not set huge_file, so i_blocks (in 512-byte
units, 32 bits) is the bound.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.constants import MAX_LFS_FILESIZE, MAX_PAGECACHE_ORDER
from writepath.kernel.filemap import filemap_fault
from writepath.kernel.fs.ext4 import ext4_aops, ext4_buffered_write_iter
from writepath.kernel.vfs import FileSystem

EXT4_NDIR_BLOCKS: Final = 12


def ext4_max_bitmap_size(bits: int, has_huge_files: bool) -> int:
    """The largest size of an indirect-mapped file with ``1 << bits`` byte blocks
    (fs/ext4/super.c): what the block tree can address, cut to what i_blocks can count once
    the tree's own metadata blocks are counted too."""
    ppb = 1 << (bits - 2)  # block numbers per indirect block
    res = EXT4_NDIR_BLOCKS + ppb + ppb * ppb + ppb * ppb * ppb
    # i_blocks counts 512-byte units in 32 bits, or 48 with huge_file.
    upper_limit = (1 << 48) - 1 if has_huge_files else ((1 << 32) - 1) >> (bits - 9)
    meta_blocks = 1 + (1 + ppb) + (1 + ppb + ppb * ppb)
    if res + meta_blocks > upper_limit:
        res = upper_limit
        upper_limit -= EXT4_NDIR_BLOCKS
        meta_blocks = 1
        upper_limit -= ppb
        if upper_limit < ppb * ppb:
            meta_blocks += 1 + -(-upper_limit // ppb)
        else:
            meta_blocks += 1 + ppb
            upper_limit -= ppb * ppb
            meta_blocks += 1 + -(-upper_limit // ppb) + -(-upper_limit // (ppb * ppb))
        res -= meta_blocks
    return min(res << bits, MAX_LFS_FILESIZE)


#: s_bitmap_maxbytes of an ext2 filesystem with 4 KiB blocks and no huge_file feature.
EXT2_MAX_SIZE_4K: Final = ext4_max_bitmap_size(12, False)


def ext2() -> FileSystem:
    """An ext2 filesystem (4 KiB blocks) mounted through the ext4 driver."""
    return FileSystem(
        "ext2",
        EXT2_MAX_SIZE_4K,
        MAX_PAGECACHE_ORDER,
        True,
        ext4_aops,
        ext4_buffered_write_iter,
        filemap_fault,  # ext4_file_vm_ops' .fault
    )
