"""Bad scenarios get errors naming the file, the field and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from writepath import ScenarioError, load_scenario, parse_scenario
from writepath.scenario import fill

GOOD = {
    "name": "ok",
    "file": [{"name": "target", "fs": "tmpfs", "size": 4096}],
    "region": [{"name": "buf", "kind": "anon", "touched": True, "data": "pattern"}],
    "call": [{"op": "pwrite", "iov": [["buf", 0, 4096]]}],
}

BAD = [
    ({"file": [{"name": "target", "fs": "btrfs"}]}, "file[0].fs", "not one of"),
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
