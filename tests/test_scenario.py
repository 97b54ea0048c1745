"""Bad scenarios get errors naming the file, the field and what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from writepath import ScenarioError, load_scenario, parse_scenario
from writepath.kernel.constants import TASK_SIZE_MAX, UIO_MAXIOV
from writepath.kernel.filemap import DESIGNS
from writepath.kernel.fs import filesystems
from writepath.layout import MODEL_BASE
from writepath.scenario import (
    DEFAULT_MAX_MEMORY,
    DESIGN_NAMES,
    FILESYSTEMS,
    MAX_SCENARIO_BYTES,
    check_memory,
    default_catalogue,
    fill,
    find_scenario,
    load_catalogue,
    memory_demand,
)

GOOD = {
    "name": "ok",
    "file": [{"name": "target", "fs": "tmpfs", "size": 4096}],
    "region": [{"name": "buf", "kind": "anon", "touched": True, "data": "pattern"}],
    "call": [{"op": "pwrite", "iov": [["buf", 0, 4096]]}],
}

BAD = [
    ({"file": [{"name": "target", "fs": "zfs"}]}, "file[0].fs", "not one of"),
    ({"file": [{"name": "target", "size": -1}]}, "file[0].size", "out of range"),
    ({"file": [{"name": "target", "data": "random"}]}, "file[0].data", "pattern"),
    (
        {"file": [{"name": "target", "fs": "tmpfs", "cached": False, "size": 10}]},
        "file[0].cached",
        "page cache",
    ),
    ({"region": [{"name": "m", "kind": "file", "file": "nope"}]}, "region[0].file", "nope"),
    (
        {"region": [{"name": "m", "kind": "file", "file": "target", "offset": 100}]},
        "region[0].offset",
        "page-aligned",
    ),
    (
        {"region": [{"name": "m", "kind": "file", "file": "target", "pages": 2, "touched": True}]},
        "region[0].touched",
        "SIGBUS",
    ),
    (
        {"region": [{"name": "m", "kind": "anon", "prot": "none", "touched": True}]},
        "region[0].touched",
        "PROT_NONE",
    ),
    ({"region": [{"name": "m", "kind": "anon", "data": "pattern"}]}, "region[0].data", "zeros"),
    ({"region": [{"name": "m", "kind": "hole", "touched": True}]}, "region[0].touched", "hole"),
    ({"call": [{"op": "pwrite", "iov": [["ghost", 0, 1]]}]}, "call[0].iov[0]", "ghost"),
    ({"call": [{"op": "pwrite", "iov": []}]}, "call[0].iov", "exactly one"),
    ({"call": [{"op": "splice"}]}, "call[0].op", "not one of"),
    (
        {"call": [{"op": "write", "iov": [["buf", 0, 1]], "flags": ["O_DIRECT"]}]},
        "call[0].flags",
        "O_DIRECT",
    ),
    ({"expect": {"ret": [1, 2]}}, "expect.ret", "2 entries for 1 calls"),
    ({"expect": {"ret": ["EWHAT"]}}, "expect.ret[0]", "errno"),
    ({"expect": {"design": {"v7": {"verdict": "ok"}}}}, "expect.design.v7", "unknown design"),
    ({"colour": "blue"}, "colour", "unknown field"),
    # Integers against the kernel's types and limits.
    ({"file": [{"name": "target", "size": 2**63}]}, "file[0].size", "s_maxbytes of tmpfs"),
    (
        {"file": [{"name": "target", "fs": "ext4", "size": 2**50}]},
        "file[0].size",
        "s_maxbytes of ext4",
    ),
    ({"file": [{"name": "target", "size": 1.5}]}, "file[0].size", "not float 1.5"),
    ({"file": [{"name": "target", "size": float("nan")}]}, "file[0].size", "float nan"),
    ({"file": [{"name": "target", "size": True}]}, "file[0].size", "must be an integer"),
    ({"file": [{"name": "target", "cached": 1}]}, "file[0].cached", "true or false"),
    ({"rlimit_fsize": 2**64}, "rlimit_fsize", "RLIM_INFINITY"),
    ({"rlimit_fsize": -1}, "rlimit_fsize", "out of range"),
    ({"rlimit_fsize": False}, "rlimit_fsize", "must be an integer"),
    ({"region": [{"name": "m", "pages": 10**9}]}, "region[0].pages", "user space"),
    ({"region": [{"name": "m", "pages": 0}]}, "region[0].pages", "out of range"),
    (
        {"region": [{"name": "a", "pages": 2**27}, {"name": "b", "pages": 2**27}]},
        "region[1].pages",
        "user space",
    ),
    (
        {"region": [{"name": "m", "kind": "file", "file": "target", "offset": 2**63 - 4096}]},
        "region[0].offset",
        "out of range",
    ),
    ({"call": [{"op": "pwrite", "iov": [["buf", 0, 1]], "pos": 2**63}]}, "call[0].pos", "loff_t"),
    (
        {"call": [{"op": "pwrite", "iov": [["buf", 0, 1]], "pos": -(2**63) - 1}]},
        "call[0].pos",
        "loff_t",
    ),
    ({"call": [{"op": "write", "iov": [["buf", 0, 1]], "fd": 2**31}]}, "call[0].fd", "int"),
    ({"call": [{"op": "write", "iov": [["buf", 0, 1]], "fd": 1.0}]}, "call[0].fd", "integer"),
    ({"call": [{"op": "write", "iov": [["buf", 0, 2**64]]}]}, "call[0].iov[0]", "size_t"),
    ({"call": [{"op": "writev", "iov": [["buf", 0, -(2**63) - 1]]}]}, "call[0].iov[0]", "size_t"),
    ({"call": [{"op": "write", "iov": [["buf", 2**64, 1]]}]}, "call[0].iov[0]", "64-bit"),
    ({"call": [{"op": "write", "iov": [["null", -1, 1]]}]}, "call[0].iov[0]", "64-bit"),
    ({"call": [{"op": "write", "iov": [["null", 2**64, 1]]}]}, "call[0].iov[0]", "64-bit"),
    ({"call": [{"op": "write", "iov": [["kernel", 2**63, 1]]}]}, "call[0].iov[0]", "64-bit"),
    ({"call": [{"op": "write", "iov": [["buf", 0.0, 1]]}]}, "call[0].iov[0]", "float 0.0"),
    ({"call": [{"op": "write", "iov": [["buf", True, 1]]}]}, "call[0].iov[0]", "boolean"),
    ({"call": [{"op": "write", "iov": [[1, 0, 1]]}]}, "call[0].iov[0]", "region must be"),
    (
        {"call": [{"op": "writev", "iov": [["buf", 0, 1]] * (2 * UIO_MAXIOV + 1)}]},
        "call[0].iov",
        "UIO_MAXIOV",
    ),
    (
        {"call": [{"op": "write", "iov": [["buf", 0, 1]], "flags": ["O_WRONLY", "O_WRONLY"]}]},
        "call[0].flags",
        "twice",
    ),
    ({"call": [{"op": "lseek"}] * 1025}, "call", "at most 1024"),
    (
        {"call": [{"op": "writev", "iov": [["buf", 0, 1]] * 1024}] * 17},
        "call",
        "iov entries",
    ),
    ({"file": [{"name": f"f{k}"} for k in range(17)]}, "file", "at most 16"),
    ({"region": [{"name": f"r{k}"} for k in range(65)]}, "region", "at most 64"),
    ({"expect": {"ret": [-1]}}, "expect.ret[0]", "errno names"),
    ({"expect": {"ret": [2**63]}}, "expect.ret[0]", "out of range"),
    ({"expect": {"ret": ["errorcode"]}}, "expect.ret[0]", "errno"),
    ({"expect": {"sizes": {"target": 2**63}}}, "expect.sizes.target", "s_maxbytes"),
    ({"expect": {"sizes": {"target": -1}}}, "expect.sizes.target", "out of range"),
    # Names: one path component, bounded.
    ({"file": [{"name": "a" * 65}]}, "file[0].name", "path component"),
    ({"file": [{"name": "a/b"}]}, "file[0].name", "path component"),
    ({"file": [{"name": "a\0b"}]}, "file[0].name", "path component"),
    ({"file": [{"name": ".."}]}, "file[0].name", "not '.' or '..'"),
    ({"file": [{"name": ""}]}, "file[0].name", "path component"),
    ({"file": [{"name": "null"}]}, "file[0].name", "reserved"),
    ({"region": [{"name": "."}]}, "region[0].name", "path component"),
    ({"region": [{"name": "bü"}]}, "region[0].name", "path component"),
    ({"name": "a" * 101}, "name", "1 to 100"),
    ({"name": "Upper"}, "name", "lower-case"),
    ({"description": "x" * 4001}, "description", "at most 4000"),
    ({"description": "\x1b[31mred"}, "description", "control characters"),
    ({"source": "a\nb"}, "source", "control characters"),
    ({"source": "s" * 501}, "source", "at most 500"),
    # Hostile keys are quoted in the field name, so an error stays one printable line.
    ({"expect": {"sizes": {"a\nb": 1}}}, "expect.sizes.'a\\nb'", "no such file"),
    ({"bad\x1bkey": 1}, "'bad\\x1bkey'", "unknown field"),
]


@pytest.mark.parametrize(("patch", "field", "reason"), BAD)
def test_bad_scenarios_name_field_and_reason(patch: dict, field: str, reason: str) -> None:  # type: ignore[type-arg]
    doc = {**GOOD, **patch}
    with pytest.raises(ScenarioError) as e:
        parse_scenario(doc, "bad.toml")
    assert e.value.path == "bad.toml"
    assert e.value.field == field
    assert reason in e.value.reason


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.toml"
    p.write_text('name = "x"\n[[file]\n')
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert str(p) in str(e.value) and "TOML" in str(e.value)


def test_fill_patterns() -> None:
    assert fill("pattern", 3) == bytes([1, 2, 3])
    assert fill("pattern:7", 2, 250) == bytes([(250 + 7) % 251 + 1, (251 + 7) % 251 + 1])
    assert fill("byte:0xab", 2) == b"\xab\xab"
    assert fill("zero", 4) == bytes(4)
    assert fill("pattern", 251 + 1)[-1] == 1  # period 251


EXPECT_BAD = [
    ({"content": {"ghost": []}}, "expect.content.ghost", "no such file"),
    ({"content": {"target": [[0, 1]]}}, "expect.content.target[0]", "[offset, length, spec]"),
    ({"content": {"target": [[-1, 1, "zero"]]}}, "expect.content.target[0]", ">= 0"),
    ({"content": {"target": [[0, -1, "zero"]]}}, "expect.content.target[0]", ">= 0"),
    ({"content": {"target": [[2**63 - 1, 1, "zero"]]}}, "expect.content.target[0]", "loff_t"),
    ({"content": {"target": [[0, 1, "random"]]}}, "expect.content.target[0]", "pattern:SEED"),
    ({"content": {"target": [[True, 1, "zero"]]}}, "expect.content.target[0]", "[offset"),
    (
        {"content": {"target": [[10, 5, "zero"], [14, 1, "pattern"]]}},
        "expect.content.target[1]",
        "previous range",
    ),
    (
        {"content": {"target": [[10, 5, "zero"], [0, 1, "pattern"]]}},
        "expect.content.target[1]",
        "previous range",
    ),
    ({"content": {"target": "zero"}}, "expect.content.target", "list of ranges"),
    ({"stale": {"ghost": []}}, "expect.stale.ghost", "no such file"),
    ({"stale": {"target": [[5, 5]]}}, "expect.stale.target[0]", "start < end"),
    ({"stale": {"target": [[-1, 5]]}}, "expect.stale.target[0]", "0 <= start"),
    ({"stale": {"target": [[0, 2**63]]}}, "expect.stale.target[0]", "end <="),
    ({"stale": {"target": [[0, 5, 6]]}}, "expect.stale.target[0]", "[start, end]"),
    ({"stale": {"target": [[0, 5], [5, 9]]}}, "expect.stale.target[1]", "merged"),
    ({"stale": {"target": [[6, 9], [0, 5]]}}, "expect.stale.target[1]", "sorted"),
    ({"verdict": "stale"}, "expect.verdict", "not one of"),
]


@pytest.mark.parametrize(("expect", "field", "reason"), EXPECT_BAD)
def test_bad_content_and_stale_expectations(expect: dict, field: str, reason: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ScenarioError) as e:
        parse_scenario({**GOOD, "expect": expect}, "bad.toml")
    assert e.value.field == field
    assert reason in e.value.reason


def test_content_and_stale_are_parsed_and_inherited_by_designs() -> None:
    doc = {
        **GOOD,
        "expect": {
            "verdict": "ok",
            "content": {"target": [[0, 100, "pattern"], [100, 10, "byte:0x00"]]},
            "stale": {"target": [[200, 300], [4000, 4096]]},
            "design": {
                "v6.13": {"ret": [4096]},
                "v6.14": {"verdict": "stale-data", "stale": {"target": []}},
                "faulting-copy": {"verdict": "deadlock"},
            },
        },
    }
    s = parse_scenario(doc, "x.toml")
    assert s.expect is not None
    assert s.expect.content == {"target": ((0, 100, "pattern"), (100, 10, "byte:0x00"))}
    assert s.expect.stale == {"target": ((200, 300), (4000, 4096))}
    v613 = s.expectation("v6.13")
    assert v613 is not None and v613.content == s.expect.content
    assert v613.stale == s.expect.stale
    proposed = s.expectation("v6.14")
    assert proposed is not None and proposed.verdict == "stale-data"
    assert proposed.stale == {"target": ()}  # stated "none", not "not stated"
    assert proposed.content == s.expect.content
    stuck = s.expectation("faulting-copy")
    assert stuck is not None and stuck.content == {} and stuck.stale is None


def test_stale_not_stated_is_none() -> None:
    s = parse_scenario({**GOOD, "expect": {"ret": [4096]}}, "x.toml")
    assert s.expect is not None and s.expect.stale is None and s.expect.content == {}


def test_flags_for_an_access_mode_of_three_stay_valid() -> None:
    # O_WRONLY|O_RDWR is access mode 3: open() accepts it and write() returns EBADF.
    doc = {
        **GOOD,
        "call": [{"op": "write", "iov": [["buf", 0, 1]], "flags": ["O_WRONLY", "O_RDWR"]}],
    }
    assert parse_scenario(doc).calls[0].flags == ("O_WRONLY", "O_RDWR")


def test_limits_at_the_edges_are_accepted() -> None:
    ext4_max = filesystems()["ext4"].s_maxbytes
    max_pages = (TASK_SIZE_MAX - MODEL_BASE) // 4096 - 2
    doc = {
        **GOOD,
        "file": [
            {"name": "target", "fs": "ext4", "size": ext4_max, "data": "zero"},
            {"name": "T-1.x_y", "fs": "tmpfs", "size": 2**63 - 1, "data": "zero"},
        ],
        "region": [{"name": "b" * 64, "pages": max_pages}],
        "call": [
            {"op": "writev", "iov": [["b" * 64, 0, -(2**63)], ["null", 2**64 - 1, 2**64 - 1]]},
            {"op": "pwrite", "iov": [["kernel", -0xFFFF_8880_0000_0000, 1]], "pos": -(2**63)},
            {"op": "write", "iov": [["b" * 64, 0, 1]], "fd": -(2**31)},
            {"op": "writev", "iov": [["b" * 64, 0, 1]] * (UIO_MAXIOV + 1)},
        ],
        "rlimit_fsize": 2**64 - 1,
        "expect": {"ret": [0, 0, 2**63 - 1, "EINVAL"], "sizes": {"target": ext4_max}},
        "name": "n" * 100,
    }
    s = parse_scenario(doc)
    assert s.rlimit_fsize == 2**64 - 1 and s.regions[0].pages == max_pages


def test_one_guard_page_each_side_fits_below_task_size() -> None:
    max_pages = (TASK_SIZE_MAX - MODEL_BASE) // 4096 - 2
    parse_scenario({**GOOD, "region": [{"name": "buf", "pages": max_pages}]})
    with pytest.raises(ScenarioError) as e:
        parse_scenario({**GOOD, "region": [{"name": "buf", "pages": max_pages + 1}]})
    assert e.value.field == "region[0].pages"


def test_names_come_from_the_kernel_model() -> None:
    assert tuple(DESIGNS) == DESIGN_NAMES
    assert tuple(filesystems()) == FILESYSTEMS


def _top(line: bytes) -> bytes:
    """A valid scenario with ``line`` added at the top level: the field under test fails."""
    return b'name = "x"\n' + line + b'\n[[file]]\nname = "t"\n[[call]]\nop = "lseek"\n'


HOSTILE_FILES: list[tuple[str, bytes, str]] = [
    ("latin1", b'name = "caf\xe9"\n', "UTF-8"),
    ("nul", b'name = "a\x00b"\n', "TOML"),
    ("nested-array", b"name = " + b"[" * 5000 + b"]" * 5000, "nested"),
    ("nested-table", b"a = " + b"{b = " * 3000 + b"1" + b"}" * 3000, "nested"),
    ("long-int", b"rlimit_fsize = " + b"9" * 5000, "TOML"),
    ("hex-int", _top(b"rlimit_fsize = 0x" + b"f" * 5000), "<integer of 20000 bits>"),
    ("date", _top(b"rlimit_fsize = 1979-05-27"), "not date 1979-05-27"),
    ("datetime", _top(b"rlimit_fsize = 1979-05-27T07:32:00Z"), "datetime 1979-05-27T07:32"),
    ("inf", _top(b"rlimit_fsize = inf"), "float inf"),
    ("nan", _top(b"rlimit_fsize = nan"), "float nan"),
    ("float", _top(b"rlimit_fsize = 4096.0"), "float 4096.0"),
    (
        "deep-iov",
        _top(b"") + b"[[call]]\nop = 'writev'\niov = " + b"[" * 300 + b"]" * 300,
        "iov[0]",
    ),
    ("not-a-table", b'name = "x"\nfile = 3', "file"),
    ("array-of-tables", _top(b"") + b"[[expect]]\nret = [0]", "expect"),
]


@pytest.mark.parametrize(("label", "content", "reason"), HOSTILE_FILES)
def test_hostile_files_give_scenario_errors(
    tmp_path: Path, label: str, content: bytes, reason: str
) -> None:
    p = tmp_path / f"{label}.toml"
    p.write_bytes(content)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert str(p) in str(e.value)
    assert reason in str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 500


def test_directory_and_oversized_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="directory"):
        load_scenario(tmp_path)
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(MAX_SCENARIO_BYTES + 1)  # sparse: the test costs no memory or disk
    with pytest.raises(ScenarioError, match="at most"):
        load_scenario(big)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.toml")


def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(ScenarioError, match="not a regular file"):
        load_scenario(fifo)


def _writer(
    size: int = 0,
    data: str = "zero",
    pages: int = 1,
    length: int = 4096,
    fs: str = "tmpfs",
    touched: bool = True,
    region_data: str = "pattern",
) -> dict:  # type: ignore[type-arg]
    return {
        "name": "mem",
        "file": [{"name": "target", "fs": fs, "size": size, "data": data}],
        "region": [{"name": "buf", "pages": pages, "touched": touched, "data": region_data}],
        "call": [{"op": "pwrite", "iov": [["buf", 0, length]]}],
    }


GIB = 1 << 30


def test_a_one_gib_write_is_accepted_under_the_default() -> None:
    s = parse_scenario(_writer(pages=GIB // 4096, length=GIB), "gib.toml")
    need = memory_demand(s)
    # The source (1 GiB of pattern) and the page cache it fills (1 GiB) are both real.
    assert 2 * GIB < need < DEFAULT_MAX_MEMORY
    check_memory(s, DEFAULT_MAX_MEMORY)
    # On xfs the page cache comes in 2 MiB folios: still within the limit.
    xfs = memory_demand(parse_scenario(_writer(pages=GIB // 4096, length=GIB, fs="xfs")))
    assert 2 * GIB < xfs < DEFAULT_MAX_MEMORY


def test_huge_data_is_refused_with_a_clear_message() -> None:
    s = parse_scenario(_writer(size=2**62, data="pattern"), "huge.toml")
    with pytest.raises(ScenarioError) as e:
        check_memory(s, DEFAULT_MAX_MEMORY)
    assert e.value.path == "huge.toml"
    assert "needs about" in e.value.reason and "--max-memory 3072 MiB" in e.value.reason


def test_many_touched_pages_are_refused() -> None:
    # 2**27 touched pages: 512 GiB of pattern data in user memory.
    s = parse_scenario(_writer(pages=2**27), "pages.toml")
    with pytest.raises(ScenarioError, match="needs about"):
        check_memory(s, DEFAULT_MAX_MEMORY)


def test_sparse_and_untouched_memory_cost_little() -> None:
    # A sparse 2**62-byte file and 2**27 untouched pages: nothing is materialized but the page
    # the one-page write fills and its page-table entries.
    s = parse_scenario(
        _writer(size=2**62, pages=2**27, touched=False, region_data="zero"), "sparse.toml"
    )
    assert memory_demand(s) < 1 << 20


def test_a_write_costs_what_its_source_can_supply() -> None:
    # 2 GiB asked from one readable page: the copy stops at the end of the page.
    s = parse_scenario(_writer(length=2**31), "short.toml")
    assert memory_demand(s) < 1 << 20
    # A negative iov_len is refused (EINVAL) before anything is copied.
    doc = _writer(pages=1)
    doc["call"] = [{"op": "writev", "iov": [["buf", 0, 4096], ["buf", 0, -1]]}]
    assert memory_demand(parse_scenario(doc)) < 1 << 16


def test_memory_grows_with_data_written() -> None:
    small = memory_demand(parse_scenario(_writer(pages=256, length=4096)))
    large = memory_demand(parse_scenario(_writer(pages=256, length=256 * 4096)))
    assert large - small >= 255 * 4096  # every further page written is a page-cache page


def test_every_catalogue_scenario_fits_the_default_limit() -> None:
    catalogue = load_catalogue()
    assert len(catalogue) >= 100
    for s in catalogue:
        check_memory(s, DEFAULT_MAX_MEMORY)


def test_find_scenario(tmp_path: Path) -> None:
    some = sorted(default_catalogue().glob("*.toml"))[0]
    assert find_scenario(some.stem) == default_catalogue() / some.name
    assert find_scenario(some.name) == default_catalogue() / some.name
    # The race scenarios are named the same way: the explorer's replay hint uses the bare name.
    race = default_catalogue() / "race" / "race-kill-writer.toml"
    assert find_scenario("race-kill-writer") == race
    own = tmp_path / "mine.toml"
    own.write_text("")
    assert find_scenario(str(own)) == own
    for missing in (
        "no-such-scenario",
        "../scenarios/" + some.stem,
        "race/race-kill-writer",
        "",
        ".",
    ):
        with pytest.raises(ScenarioError) as e:
            find_scenario(missing)
        assert e.value.reason == "no such file or catalogue scenario"


def test_the_data_folders_in_use_hold_the_checkouts_files() -> None:
    """An editable install reads the checkout's folders; a built wheel (the CI's compiled
    build) reads the copies setup.py put in writepath/_data/. Either way the files are the
    checkout's, byte for byte."""
    from pathlib import Path

    import writepath
    from writepath.datadirs import DATA_FOLDERS, data_dir

    checkout = Path(__file__).resolve().parents[1]
    installed = Path(writepath.__file__).resolve().parent
    for name in DATA_FOLDERS:
        mine = sorted(p.relative_to(checkout / name) for p in (checkout / name).rglob("*.toml"))
        used = data_dir(name)
        # Never the current directory's fallback, which would hide a wheel without its data.
        want = checkout / name if installed == checkout / "src" / "writepath" else None
        assert used == (want or installed / "_data" / name), used
        theirs = sorted(p.relative_to(used) for p in used.rglob("*.toml"))
        assert mine and theirs == mine, name
        for rel in mine:
            assert (used / rel).read_bytes() == (checkout / name / rel).read_bytes(), rel
