"""[expect] content and stale: parsed, bounded, inherited by designs."""

from __future__ import annotations

from typing import Any

import pytest

from writepath.scenario import ScenarioError, parse_scenario


def doc(**expect: Any) -> dict[str, Any]:
    return {
        "name": "e",
        "file": [{"name": "target", "size": 8192}],
        "call": [{"op": "lseek"}],
        "expect": expect,
    }


def test_content_and_stale_parse_and_inherit() -> None:
    d = doc(
        content={"target": [[0, 100, "pattern:7"], [100, 50, "zero"]]},
        stale={"target": [[196, 4096]]},
        verdict="stale-data",
    )
    d["expect"]["design"] = {"v6.13": {}}
    s = parse_scenario(d, "<t>")
    assert s.expect is not None
    assert s.expect.content == {"target": ((0, 100, "pattern:7"), (100, 50, "zero"))}
    assert s.expect.stale == {"target": ((196, 4096),)}
    inherited = s.expectation("v6.13")
    assert inherited is not None and inherited.stale == {"target": ((196, 4096),)}
    assert inherited.verdict == "stale-data"


def test_stale_empty_list_states_none() -> None:
    s = parse_scenario(doc(stale={"target": []}), "<t>")
    assert s.expect is not None and s.expect.stale == {"target": ()}
    s = parse_scenario(doc(), "<t>")
    assert s.expect is not None and s.expect.stale is None


@pytest.mark.parametrize(
    ("expect", "field"),
    [
        ({"content": {"other": [[0, 1, "zero"]]}}, "expect.content.other"),
        ({"content": {"target": [[0, 0, "zero"]]}}, "expect.content.target[0]"),
        ({"content": {"target": [[-1, 4, "zero"]]}}, "expect.content.target[0]"),
        ({"content": {"target": [[0, 4, "nonsense"]]}}, "expect.content.target[0]"),
        ({"content": {"target": [[0, 4, "zero"], [2, 4, "zero"]]}}, "expect.content.target[1]"),
        ({"content": {"target": [[0, 2**70, "zero"]]}}, "expect.content.target[0]"),
        ({"content": {"target": "zero"}}, "expect.content.target"),
        ({"stale": {"target": [[10, 10]]}}, "expect.stale.target[0]"),
        ({"stale": {"target": [[10, 5]]}}, "expect.stale.target[0]"),
        ({"stale": {"target": [[10, 20], [15, 30]]}}, "expect.stale.target[1]"),
        ({"stale": {"target": [[0, 2**64]]}}, "expect.stale.target[0]"),
        ({"stale": {"target": [[True, 4]]}}, "expect.stale.target[0]"),
        ({"stale": {"nope": []}}, "expect.stale.nope"),
        ({"verdict": "stale"}, "expect.verdict"),
    ],
)
def test_bad_expectations_name_the_field(expect: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(doc(**expect), "<t>")
    assert e.value.field == field
