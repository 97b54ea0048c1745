"""The iomap iterator — fs/iomap/iter.c and include/linux/iomap.h (v6.18).

``iomap_iter()`` is what walks a filesystem's mappings under a buffered write (and the zeroing
before one): each call ends the previous mapping (``->iomap_end``), decides whether to go on, and
asks the filesystem for the next mapping (``->iomap_begin``). It fires the ``iomap_iter``
tracepoint on entry, with the iterator as it stands: so the first call shows no mapping yet
(``iomap_length()`` of an empty mapping) and the last shows the mapping that ended the walk.

A mapping here is only what the write path's trace and loop depend on: its byte range and
whether ``->iomap_begin`` allocated it (IOMAP_F_NEW); its type is left to the callers, which
decide block by block (``writepath.kernel.fs.iomap``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from writepath.kernel import tracepoints as tp
from writepath.kernel.task import Task
from writepath.kernel.vfs import Inode

#: Flag names as the tracepoint prints them (IOMAP_FLAGS_STRINGS, fs/iomap/trace.h).
IOMAP_WRITE = "WRITE"
IOMAP_ZERO = "ZERO"

U64 = 1 << 64


@dataclass
class Iomap:
    """struct iomap, reduced to [offset, offset + length) and IOMAP_F_NEW."""

    offset: int = 0
    length: int = 0
    new: bool = False


@dataclass
class IomapIter:
    """struct iomap_iter: where the walk stands, what is left, and the current mapping."""

    inode: Inode
    pos: int
    len: int
    flags: tuple[str, ...]
    status: int = 0
    iter_start_pos: int = 0
    iomap: Iomap = field(default_factory=Iomap)

    def __post_init__(self) -> None:
        self.iter_start_pos = self.pos


IomapBegin = Callable[[Task, Inode, int, int, tuple[str, ...]], Iomap]
IomapEnd = Callable[[Task, Inode, int, int, int, tuple[str, ...], Iomap], None]


def iomap_length_trim(it: IomapIter, pos: int, len: int) -> int:
    """What is left of ``len`` at ``pos`` inside the current mapping. The kernel computes the
    distance to the mapping's end in u64: before any mapping (offset and length 0) and ``pos``
    above 0 it wraps to a huge value, so the trim is ``len`` itself."""
    end = it.iomap.offset + it.iomap.length
    return min(len, (end - pos) % U64)


def iomap_length(it: IomapIter) -> int:
    return iomap_length_trim(it, it.pos, it.len)


def iomap_iter_advance(it: IomapIter, count: int) -> None:
    it.pos += count
    it.len -= count


def iomap_iter(task: Task, it: IomapIter, begin: IomapBegin, end: IomapEnd | None) -> int:
    """Advance to the next mapping: 1 while there is one to process, 0 when done, or the
    status (< 0) the last iteration failed with."""
    tp.trace_iomap_iter(task, it.inode.name, it.pos, iomap_length(it), it.status, it.flags)
    if it.iomap.length:
        advanced = it.pos - it.iter_start_pos
        olen = it.len + advanced
        if end is not None:
            end(
                task,
                it.inode,
                it.iter_start_pos,
                iomap_length_trim(it, it.iter_start_pos, olen),
                advanced,
                it.flags,
                it.iomap,
            )
        if it.status < 0:
            ret = it.status
        elif it.len == 0 or not advanced:
            ret = 0
        else:
            ret = 1
        # iomap_iter_reset_iomap()
        it.status = 0
        it.iomap = Iomap()
        if ret <= 0:
            return ret
    it.iter_start_pos = it.pos
    it.iomap = begin(task, it.inode, it.pos, it.len, it.flags)
    return 1
