"""Architecture and VFS constants of an x86_64 Linux kernel (4-level page tables).

Sources: arch/x86/include/asm/page_types.h, arch/x86/include/asm/page_64_types.h,
include/linux/fs.h (MAX_RW_COUNT, MAX_LFS_FILESIZE), include/uapi/linux/uio.h (UIO_MAXIOV).
"""

from __future__ import annotations

from typing import Final

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PAGE_MASK: Final = ~(PAGE_SIZE - 1)
OFFSET_MASK: Final = PAGE_SIZE - 1

#: TASK_SIZE_MAX with 4-level paging: the first address above user space is one guard page
#: below 2**47. ``valid_user_address()`` compares against the last valid user address.
TASK_SIZE_MAX: Final = (1 << 47) - PAGE_SIZE
USER_PTR_MAX: Final = TASK_SIZE_MAX - 1

#: INT_MAX rounded down to a page: the most any one read/write call transfers.
MAX_RW_COUNT: Final = 0x7FFFFFFF & PAGE_MASK
#: LLONG_MAX on 64-bit.
MAX_LFS_FILESIZE: Final = (1 << 63) - 1
LLONG_MAX: Final = (1 << 63) - 1
UIO_MAXIOV: Final = 1024

#: MAX_PAGECACHE_ORDER on x86_64 (PMD order): the largest folio the page cache creates.
MAX_PAGECACHE_ORDER: Final = 9

#: An address in the kernel's direct map: access_ok() refuses it.
KERNEL_ADDRESS: Final = 0xFFFF_8880_0000_0000


def PAGE_ALIGN(addr: int) -> int:
    """Round up to the next page boundary (include/linux/mm.h)."""
    return (addr + PAGE_SIZE - 1) & PAGE_MASK


def DIV_ROUND_UP(n: int, d: int) -> int:
    return (n + d - 1) // d
