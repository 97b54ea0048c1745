"""Set a scenario up in the model, run its calls under one design, collect the result."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass

from writepath.counters import count
from writepath.kernel import pagecache
from writepath.kernel.bug import WARN
from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.fadvise import POSIX_FADV_DONTNEED, generic_fadvise
from writepath.kernel.filemap import DESIGNS
from writepath.kernel.fs import filesystems
from writepath.kernel.fs.fuse import fuse_file_aops, fuse_new_folio_written
from writepath.kernel.kernel import Kernel
from writepath.kernel.madvise import (
    MADV_DONTNEED,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    __vm_munmap,
    do_madvise,
    do_mprotect_pkey,
)
from writepath.kernel.mm import MM, VMA, ZERO_PAGE, do_user_addr_fault, mmap_region
from writepath.kernel.pagecache import (
    AddressSpace,
    Folio,
    fgf_set_order,
    filemap_add_folio,
    folio_size,
    mapping_max_folio_size,
)
from writepath.kernel.read import ksys_pread64
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
from writepath.kernel.signal import fatal_signal_pending, kill_pid_info
from writepath.kernel.task import SchedPoint, Task, WaitOn
from writepath.kernel.tracepoints import Event
from writepath.kernel.truncate import do_sys_ftruncate
from writepath.kernel.vfs import O_APPEND, O_RDONLY, O_RDWR, O_WRONLY, File, Inode
from writepath.layout import MODEL_BASE, iov_address, region_bases
from writepath.results import CallResult, FileState, PageData, Ranges, RunResult
from writepath.scenario import MAIN_TASK, CallSpec, Scenario, fill, is_zero_data
from writepath.sched import Choice, Outcome, Policy, Scheduler, Verdict, run_alone
from writepath.trace import model_call_traces

_FLAG_BITS = {
    "O_APPEND": O_APPEND,
    "O_RDONLY": O_RDONLY,
    "O_WRONLY": O_WRONLY,
    "O_RDWR": O_RDWR,
}
_WHENCE = {"SEEK_SET": SEEK_SET, "SEEK_CUR": SEEK_CUR, "SEEK_END": SEEK_END}
_PROT = {"none": PROT_NONE, "r": PROT_READ, "rw": PROT_READ | PROT_WRITE}
_MADVICE = {"MADV_DONTNEED": MADV_DONTNEED}
_FADVICE = {"POSIX_FADV_DONTNEED": POSIX_FADV_DONTNEED}

#: The period of ``scenario.fill``'s pattern specs: byte k depends only on k % 251.
PATTERN_PERIOD = 251


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
        if c.op in ("madvise", "munmap", "mprotect", "kill"):
            continue  # calls on memory or tasks open no file
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
    #: Every task by its scenario name (``main`` is ``task``): threads of one process, sharing
    #: its mm and its file table.
    tasks: dict[str, Task] = dataclasses.field(default_factory=dict)


@functools.lru_cache(maxsize=1024)
def _data_page(spec: str, phase: int) -> bytes:
    """One immutable page of ``spec`` starting at byte ``phase`` of the object.

    A spec's page depends only on its start modulo the pattern period, so a scenario of any size
    has at most PATTERN_PERIOD distinct pages per spec; they are computed once and shared.
    """
    if is_zero_data(spec):
        return ZERO_PAGE
    return fill(spec, PAGE_SIZE, phase)


def data_page(spec: str, start: int) -> bytes:
    """The PAGE_SIZE bytes at ``start`` of an object whose content is ``spec`` (shared, immutable:
    never write through it)."""
    # Only a pattern depends on where the page starts; any other spec has one page.
    return _data_page(spec, start % PATTERN_PERIOD if spec.startswith("pattern") else 0)


#: The oracle writes a file's initial content with pwrite() calls of this size (oracle/setup.py);
#: the page cache it leaves depends on it, so the model builds the same folios.
SETUP_WRITE_SIZE = 1 << 20


def _setup_folio_orders(mapping: AddressSpace, size: int) -> Iterator[tuple[int, int]]:
    """(index, order) of each folio that writing ``size`` bytes from offset 0, in pwrite()s of
    SETUP_WRITE_SIZE, leaves in the page cache: the write loop's chunks (mapping_max_folio_size),
    each asking __filemap_get_folio() for fgf_set_order(bytes), lowered to what the index is
    aligned to (mm/filemap.c generic_perform_write, fs/iomap/buffered-io.c, v6.18)."""
    chunk = mapping_max_folio_size(mapping)
    for start in range(0, size, SETUP_WRITE_SIZE):
        pos, left = start, min(SETUP_WRITE_SIZE, size - start)
        while left > 0:
            nbytes = min(chunk - (pos & (chunk - 1)), left)
            index = pos >> PAGE_SHIFT
            order = min(fgf_set_order(nbytes), mapping.max_order)
            while index & ((1 << order) - 1):
                order -= 1
            yield index, order
            done = min(nbytes, (PAGE_SIZE << order) - (pos & ((PAGE_SIZE << order) - 1)))
            pos += done
            left -= done


def _populate_file(task: Task, inode: Inode, spec_data: str, size: int, cached: bool) -> None:
    """Give a file its initial content, as blocks on disk and/or folios in the page cache.

    Disk blocks are immutable ``bytes`` and share the computed pages of the spec; a folio gets
    its own copy, since writes change it. Cached folios have the orders the oracle's setup
    writes give them (``_setup_folio_orders``); an uncached file has only its disk blocks.
    """
    npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
    mapping = inode.i_mapping
    pages: list[bytes] = []
    for index in range(npages):
        start = index << PAGE_SHIFT
        n = min(PAGE_SIZE, size - start)
        page = data_page(spec_data, start)
        if n < PAGE_SIZE:
            # The page past EOF reads zeros: the one page that needs its own bytes.
            page = page[:n] + bytes(PAGE_SIZE - n)
        if inode.fs.backed:
            inode.disk[index] = page
        pages.append(page)
    if not cached and inode.fs.backed:
        return
    for index, order in _setup_folio_orders(mapping, size):
        folio = Folio(mapping, index, order)
        for k in range(min(folio.nr_pages, npages - index)):
            folio.data[k << PAGE_SHIFT : (k + 1) << PAGE_SHIFT] = pages[index + k]
        if inode.fs.a_ops is fuse_file_aops:
            # Written through FUSE: a partial EOF folio is left not uptodate.
            written = min(folio_size(folio), size - (index << PAGE_SHIFT))
            fuse_new_folio_written(task, folio, written)
        else:
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
                # The write path only reads user memory, so touched pages of one content share
                # one immutable page (ZERO_PAGE for zeros) instead of owning a buffer each.
                mm.pte[addr >> PAGE_SHIFT] = (data_page(r.data, k * PAGE_SIZE), 0)
            else:
                run_alone(kernel, task, do_user_addr_fault(task, addr))
    fds: dict[tuple[str, tuple[str, ...]], int] = {}
    for n, (name, flags) in enumerate(fd_plan(scenario)):
        fd = 3 + n
        task.files[fd] = File(inodes[name], open_flags(flags))
        fds[(name, flags)] = fd
    tasks = {MAIN_TASK: task}
    task.comm = MAIN_TASK
    for pid, name in enumerate(scenario.tasks[1:], start=2):
        thread = Task(kernel, pid, mm, comm=name)
        thread.files = task.files  # CLONE_FILES: one descriptor table
        thread.rlimit_fsize = scenario.rlimit_fsize
        tasks[name] = thread
    kernel.events.clear()
    kernel.generation = 0
    return ModelMachine(kernel, task, inodes, bases, fds, tasks)


def syscall(machine: ModelMachine, call: CallSpec) -> Generator[SchedPoint | WaitOn, None, int]:
    """The generator of one call of the scenario, made by the call's task."""
    task = machine.tasks.get(call.task, machine.task)
    op = call.op
    # The writes first: they are most of what scenarios and benchmarks call.
    if op in _WRITES:
        fd = call.fd if call.fd is not None else _scenario_fd(machine, call)
        iov = call.iov
        if op == "pwrite":
            return ksys_pwrite64(
                task, fd, iov_address(iov[0], machine.bases), iov[0].length, call.pos
            )
        if op == "write":
            return ksys_write(task, fd, iov_address(iov[0], machine.bases), iov[0].length)
        vec = [(iov_address(v, machine.bases), v.length) for v in iov]
        if op == "writev":
            return do_writev(task, fd, vec)
        return do_pwritev(task, fd, vec, call.pos)
    if op in ("madvise", "munmap", "mprotect"):
        assert call.region is not None
        start = machine.bases[call.region] + call.offset
        if op == "madvise":
            assert call.advice is not None
            return do_madvise(task, start, call.length, _MADVICE[call.advice])
        if op == "munmap":
            return __vm_munmap(task, start, call.length)
        assert call.prot is not None
        return do_mprotect_pkey(task, start, call.length, _PROT[call.prot])
    if op == "kill":
        assert call.target is not None and call.signal is not None
        return kill_pid_info(task, machine.tasks[call.target], call.signal)
    fd = call.fd if call.fd is not None else _scenario_fd(machine, call)
    if op == "ftruncate":
        return do_sys_ftruncate(task, fd, call.length)
    if op == "fadvise":
        assert call.advice is not None
        return generic_fadvise(task, fd, call.offset, call.length, _FADVICE[call.advice])
    if op == "pread":
        return ksys_pread64(task, fd, call.length, call.pos)
    return ksys_lseek(task, fd, call.pos, _WHENCE[call.whence])


#: The calls that write from user memory (an iovec in the scenario).
_WRITES = frozenset(("write", "pwrite", "writev", "pwritev"))


def _scenario_fd(machine: ModelMachine, call: CallSpec) -> int:
    """The descriptor setup() opened for the call's file and flags (keyed by sorted flags)."""
    flags = call.flags
    return machine.fds[(call.file, flags if len(flags) < 2 else tuple(sorted(flags)))]


def task_body(
    machine: ModelMachine, calls: list[tuple[int, CallSpec]], out: dict[int, CallResult]
) -> Generator[SchedPoint | WaitOn, None, object]:
    """One task's calls in order (each ``repeat`` times), results into ``out`` by call index.

    A task with a fatal signal pending makes no more calls (it exits at its return to user
    space); a call it was in returns what the kernel returns."""
    for k, call in calls:
        task = machine.tasks.get(call.task, machine.task)
        ret = 0
        for _ in range(call.repeat):
            if fatal_signal_pending(task):
                return None
            ret = yield from syscall(machine, call)
        out[k] = CallResult.from_kernel_ret(call.op, ret, tuple(task.signals))
    return None


@dataclass
class TaskRun:
    """A multi-task run: the result, the machine at its end (``release_machine`` it when done
    looking), the engine's outcome and the choices it recorded."""

    result: RunResult
    machine: ModelMachine
    outcome: Outcome
    choices: list[Choice]
    steps: int


def run_tasks(
    scenario: Scenario,
    design: str,
    policy: Policy | None = None,
    keep_events: bool = False,
    max_steps: int | None = None,
) -> TaskRun:
    """Run every task of ``scenario`` concurrently under ``design``, ``policy`` choosing who runs
    at each scheduling point (default: no preemption, lower pid first). Results are in the
    scenario's call order; a call that never returned (a deadlock, a livelock, a killed task's
    later calls) has ``ret`` None."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
    machine = setup(scenario, design)
    sched = (
        Scheduler(machine.kernel, policy)
        if max_steps is None
        else Scheduler(machine.kernel, policy, max_steps)
    )
    out: dict[int, CallResult] = {}
    for name in scenario.tasks:
        mine = [(k, c) for k, c in enumerate(scenario.calls) if c.task == name]
        sched.spawn(machine.tasks[name], task_body(machine, mine, out))
    outcome = sched.run()
    calls = [out.get(k, CallResult(c.op, None, None)) for k, c in enumerate(scenario.calls)]
    files = {name: file_state(inode) for name, inode in machine.inodes.items()}
    verdict, evidence = _stale_verdict(outcome.verdict, outcome.evidence, files)
    result = RunResult(
        scenario.name, design, verdict.value, calls, files, evidence, count(machine.kernel.events)
    )
    _report_warnings(result, kernel_warnings(machine.kernel.events))
    if keep_events:
        result.events = machine.kernel.events
    return TaskRun(result, machine, outcome, sched.choices, sched.steps)


def _stale_verdict(
    verdict: Verdict, evidence: str, files: dict[str, FileState]
) -> tuple[Verdict, str]:
    """A run whose calls all returned but whose files hold uninitialized memory a reader would
    see ends ``stale-data``, its evidence the byte ranges; any other verdict stands."""
    if verdict is not Verdict.OK or not any(f.stale for f in files.values()):
        return verdict, evidence
    return Verdict.STALE_DATA, "; ".join(
        f"{name}: stale bytes {', '.join(f'[{s}, {e})' for s, e in f.stale)}"
        for name, f in files.items()
        if f.stale
    )


#: At most this many kernel warnings are reported per run (a loop can warn on every pass).
MAX_WARNINGS = 20


def kernel_warnings(events: Iterable[Event], into: list[str] | None = None) -> list[str]:
    """The WARN_ON()s the run fired (``kernel.bug``), as the kernel's log would name them:
    ``where: what``; bounded by MAX_WARNINGS."""
    out = [] if into is None else into
    for kind, _pid, where, what in events:
        if kind == WARN and len(out) < MAX_WARNINGS:
            out.append(f"{where}: {what}")
    return out


def _report_warnings(result: RunResult, warnings: list[str]) -> None:
    # A warning does not change what the calls returned, so the verdict stays; but a reader of
    # `writepath run` must see it, as a developer sees the kernel's WARN splat in dmesg.
    if not warnings:
        return
    result.extra["warnings"] = warnings
    said = "kernel warnings: " + "; ".join(warnings)
    result.evidence = f"{result.evidence}; {said}" if result.evidence else said


def _stale_ranges(inode: Inode) -> Ranges:
    """The byte ranges inside i_size that the page cache holds uninitialized."""
    return tuple(pagecache.stale_ranges(inode))


def file_state(inode: Inode) -> FileState:
    """What reading the whole file would return: uptodate page-cache data over the disk.

    Pages are shared, not copied: a cached page is a memoryview into its folio, a disk block is
    the block's own bytes. Only a last page holding bytes past EOF is copied, to zero them.
    """
    size = inode.i_size
    npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
    pages: dict[int, PageData] = {}
    i_pages = inode.i_mapping.i_pages
    views: dict[int, memoryview] = {}  # one view per folio (by its first index), sliced per page
    indexes = set(i_pages)
    indexes.update(inode.disk)
    for index in sorted(i for i in indexes if i < npages):
        folio = i_pages.get(index)
        end = min(PAGE_SIZE, size - (index << PAGE_SHIFT))  # bytes of this page inside EOF
        if folio is not None:
            k = index - folio.index
            if folio.uptodate or pagecache.folio_block_uptodate(folio, k):
                off = k << PAGE_SHIFT
                if folio.data.count(0, off, off + end) == end:
                    continue  # a page of zeros is not kept
                if end < PAGE_SIZE:
                    pages[index] = bytes(folio.data[off : off + end]) + bytes(PAGE_SIZE - end)
                    continue
                view = views.get(folio.index)
                if view is None:
                    view = views[folio.index] = memoryview(folio.data)
                pages[index] = view[off : off + PAGE_SIZE]
                continue
        block = inode.disk.get(index)
        if block is None or block.count(0, 0, end) == end:
            continue
        pages[index] = block if end == PAGE_SIZE else block[:end] + bytes(PAGE_SIZE - end)
    return FileState(size, pages, _stale_ranges(inode))


def release_machine(machine: ModelMachine) -> None:
    """Let go of the page cache, disk blocks and page table of a machine whose run has ended.

    An inode and its address_space point at each other (``mapping.host``), so without this
    every folio of a finished run stays alive until the cycle collector runs, which after a run
    of many folios can be when the next run has built its own page cache. The file states keep
    the pages they share.
    """
    for inode in machine.inodes.values():
        inode.i_mapping.i_pages.clear()
        inode.disk.clear()
    machine.task.mm.pte.clear()


def run_scenario(
    scenario: Scenario, design: str, keep_events: bool = True, traces: bool = False
) -> RunResult:
    """Run every call of ``scenario`` in the model under ``design``.

    With ``keep_events`` the result carries the whole event log (``writepath trace`` renders
    it). Without, events are folded into the counters as the run goes and the log stays
    bounded, however long the write: the counters are the same either way. With ``traces``
    every call carries the tracepoints it fired, in the form the oracle gives the kernel's
    (``trace.model_call_traces``); the log is then kept for the run.
    """
    if traces and not keep_events:
        result = run_scenario(scenario, design, keep_events=True, traces=True)
        result.events = []
        return result
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
    if not scenario.single_task:
        # Several tasks: the one engine under its default schedule (no preemption).
        run = run_tasks(scenario, design, keep_events=keep_events)
        release_machine(run.machine)
        return run.result
    machine = setup(scenario, design)
    events = machine.kernel.events
    counters = count(())

    warnings: list[str] = []

    def drain(batch: list[Event]) -> None:
        count(batch, counters)
        kernel_warnings(batch, warnings)

    calls: list[CallResult] = []
    verdict, evidence = Verdict.OK, ""
    for call in scenario.calls:
        machine.task.signals = []
        outcome = run_alone(
            machine.kernel,
            machine.task,
            syscall(machine, call),
            drain=None if keep_events else drain,
        )
        if outcome.verdict is not Verdict.OK:
            calls.append(CallResult(call.op, None, None))
            verdict, evidence = outcome.verdict, outcome.evidence
            break
        ret = outcome.results[machine.task.pid]
        assert isinstance(ret, int)
        calls.append(CallResult.from_kernel_ret(call.op, ret, tuple(machine.task.signals)))
    drain(events)  # what the last call left in the log (all of it when keeping events)
    files = {name: file_state(inode) for name, inode in machine.inodes.items()}
    if traces:
        regions = [
            (r.name, machine.bases[r.name], machine.bases[r.name] + r.length)
            for r in scenario.regions
        ]
        per_call = model_call_traces(events, regions)
        calls = [dataclasses.replace(c, trace=t) for c, t in zip(calls, per_call, strict=False)]
    release_machine(machine)
    verdict, evidence = _stale_verdict(verdict, evidence, files)
    result = RunResult(scenario.name, design, verdict.value, calls, files, evidence, counters)
    _report_warnings(result, warnings)
    if keep_events:
        # The machine ends with this run: its log can be handed over without a copy.
        result.events = events
    return result
