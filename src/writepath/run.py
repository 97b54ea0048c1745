"""Set a scenario up in the model, run its calls under one design, collect the result."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from writepath.counters import count
from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.filemap import DESIGNS
from writepath.kernel.fs import filesystems
from writepath.kernel.kernel import Kernel
from writepath.kernel.mm import MM, VMA, do_user_addr_fault, mmap_region
from writepath.kernel.pagecache import Folio, filemap_add_folio
from writepath.kernel.read_write import (
    SEEK_CUR,
    SEEK_END,
    SEEK_SET,
    do_pwritev,
    do_writev,
    ksys_lseek,
    ksys_pwrite64,
    ksys_write,
)
from writepath.kernel.task import SchedPoint, Task, WaitOn
from writepath.kernel.vfs import O_APPEND, O_RDONLY, O_RDWR, O_WRONLY, File, Inode
from writepath.layout import MODEL_BASE, iov_address, region_bases
from writepath.results import CallResult, FileState, RunResult
from writepath.scenario import CallSpec, Scenario, fill
from writepath.sched import Verdict, run_alone

_FLAG_BITS = {
    "O_APPEND": O_APPEND,
    "O_RDONLY": O_RDONLY,
    "O_WRONLY": O_WRONLY,
    "O_RDWR": O_RDWR,
}
_WHENCE = {"SEEK_SET": SEEK_SET, "SEEK_CUR": SEEK_CUR, "SEEK_END": SEEK_END}


def open_flags(flags: tuple[str, ...]) -> int:
    """open(2) flags of a call: O_RDWR unless an access mode is named."""
    bits = 0
    for f in flags:
        bits |= _FLAG_BITS[f]
    if not any(f in ("O_RDONLY", "O_WRONLY", "O_RDWR") for f in flags):
        bits |= O_RDWR
    return bits


def fd_plan(scenario: Scenario) -> list[tuple[str, tuple[str, ...]]]:
    """The files a scenario opens, one per distinct (file, flags), in order of first use; the
    n-th gets descriptor 3 + n. Calls with the same file and flags share the file position."""
    plan: list[tuple[str, tuple[str, ...]]] = []
    for c in scenario.calls:
        key = (c.file, tuple(sorted(c.flags)))
        if key not in plan:
            plan.append(key)
    return plan


@dataclass
class ModelMachine:
    """A scenario set up in the model, ready to run calls."""

    kernel: Kernel
    task: Task
    inodes: dict[str, Inode]
    bases: dict[str, int]
    fds: dict[tuple[str, tuple[str, ...]], int]


def _populate_file(task: Task, inode: Inode, spec_data: str, size: int, cached: bool) -> None:
    npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
    mapping = inode.i_mapping
    for index in range(npages):
        start = index << PAGE_SHIFT
        n = min(PAGE_SIZE, size - start)
        page = fill(spec_data, n, start).ljust(PAGE_SIZE, b"\0")
        if inode.fs.backed:
            inode.disk[index] = page
        if cached or not inode.fs.backed:
            folio = Folio(mapping, index, 0)
            folio.data[:] = page
            folio.uptodate = True
            filemap_add_folio(task, mapping, folio)


def setup(scenario: Scenario, design: str) -> ModelMachine:
    kernel = Kernel(design, DESIGNS[design])
    fs_by_name = filesystems()
    mm = MM()
    task = Task(kernel, 1, mm)
    task.rlimit_fsize = scenario.rlimit_fsize
    inodes: dict[str, Inode] = {}
    for f in scenario.files:
        inode = Inode(kernel.new_ino(), fs_by_name[f.fs], f.name)
        inode.i_size = f.size
        if not f.sparse:
            _populate_file(task, inode, f.data, f.size, f.cached)
        inodes[f.name] = inode
    bases = region_bases(scenario.regions, MODEL_BASE)
    for r in scenario.regions:
        start = bases[r.name]
        if r.kind == "hole":
            continue
        vma = VMA(
            start,
            start + r.length,
            readable=r.prot != "none",
            writable=r.prot == "rw",
            shared=r.shared,
            vm_file=inodes[r.file] if r.file else None,
            vm_pgoff=r.offset >> PAGE_SHIFT,
            name=r.name,
        )
        mmap_region(task, mm, vma)
        if not r.touched:
            continue
        for k in range(r.pages):
            addr = start + k * PAGE_SIZE
            if r.kind == "anon":
                mm.pte[addr >> PAGE_SHIFT] = (
                    bytearray(fill(r.data, PAGE_SIZE, k * PAGE_SIZE)),
                    0,
                )
            else:
                run_alone(kernel, task, do_user_addr_fault(task, addr))
    fds: dict[tuple[str, tuple[str, ...]], int] = {}
    for n, (name, flags) in enumerate(fd_plan(scenario)):
        fd = 3 + n
        task.files[fd] = File(inodes[name], open_flags(flags))
        fds[(name, flags)] = fd
    kernel.events.clear()
    kernel.generation = 0
    return ModelMachine(kernel, task, inodes, bases, fds)


def syscall(machine: ModelMachine, call: CallSpec) -> Generator[SchedPoint | WaitOn, None, int]:
    """The generator of one call of the scenario."""
    task = machine.task
    fd = call.fd if call.fd is not None else machine.fds[(call.file, tuple(sorted(call.flags)))]
    vec = [(iov_address(v, machine.bases), v.length) for v in call.iov]
    if call.op == "write":
        return ksys_write(task, fd, vec[0][0], vec[0][1])
    if call.op == "pwrite":
        return ksys_pwrite64(task, fd, vec[0][0], vec[0][1], call.pos)
    if call.op == "writev":
        return do_writev(task, fd, vec)
    if call.op == "pwritev":
        return do_pwritev(task, fd, vec, call.pos)
    return ksys_lseek(task, fd, call.pos, _WHENCE[call.whence])


def file_state(inode: Inode) -> FileState:
    """What reading the whole file would return: uptodate page-cache data over the disk."""
    size = inode.i_size
    npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
    pages: dict[int, bytes] = {}
    indexes = set(inode.i_mapping.i_pages) | set(inode.disk)
    for index in sorted(i for i in indexes if i < npages):
        folio = inode.i_mapping.i_pages.get(index)
        page: bytes | None = None
        if folio is not None:
            k = index - folio.index
            if folio.uptodate or (folio.bh_uptodate is not None and folio.bh_uptodate[k]):
                page = bytes(folio.data[k << PAGE_SHIFT : (k + 1) << PAGE_SHIFT])
        if page is None:
            page = inode.disk.get(index)
        if page is None:
            continue
        end = size - (index << PAGE_SHIFT)
        if end < PAGE_SIZE:
            page = page[:end] + bytes(PAGE_SIZE - end)
        if page.count(0) != PAGE_SIZE:
            pages[index] = page
    return FileState(size, pages)


def run_scenario(scenario: Scenario, design: str, keep_events: bool = True) -> RunResult:
    """Run every call of ``scenario`` in the model under ``design``."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
    machine = setup(scenario, design)
    calls: list[CallResult] = []
    verdict, evidence = Verdict.OK, ""
    for call in scenario.calls:
        machine.task.signals = []
        outcome = run_alone(machine.kernel, machine.task, syscall(machine, call))
        if outcome.verdict is not Verdict.OK:
            calls.append(CallResult(call.op, None, None))
            verdict, evidence = outcome.verdict, outcome.evidence
            break
        ret = outcome.results[machine.task.pid]
        assert isinstance(ret, int)
        calls.append(CallResult.from_kernel_ret(call.op, ret, tuple(machine.task.signals)))
    files = {name: file_state(inode) for name, inode in machine.inodes.items()}
    events = machine.kernel.events
    result = RunResult(
        scenario.name,
        design,
        verdict.value,
        calls,
        files,
        evidence,
        count(events),
    )
    if keep_events:
        result.events = list(events)
    return result
