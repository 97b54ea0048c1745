"""A hypothesis property over random layouts (LTP writev07's rule, for every design that is
meant to be correct): whenever a call returns n >= 0 the file holds the source's first n bytes at
the position and nothing else changed; on an error nothing was copied. The expected bytes come
from the scenario's data specs, not from the model (``writepath.judge``)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from writepath import consistency_violations, parse_scenario, run_scenario

P = 4096

region_st = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("anon"),
            "touched": st.booleans(),
            "prot": st.sampled_from(["r", "rw", "none"]),
        }
    ),
    st.fixed_dictionaries({"kind": st.just("hole")}),
    st.fixed_dictionaries(
        {
            "kind": st.just("file"),
            "offset": st.integers(0, 3).map(lambda k: k * P),
            "shared": st.booleans(),
            "prot": st.sampled_from(["r", "rw", "none"]),
            "touched": st.booleans(),
        }
    ),
)


@st.composite
def layouts(draw: Any) -> dict[str, Any]:
    fs = draw(st.sampled_from(["tmpfs", "ramfs", "ext4", "xfs"]))
    target_size = draw(st.integers(0, 3 * P))
    src_size = draw(st.integers(1, 3 * P))
    cached = draw(st.booleans()) if fs in ("ext4", "xfs") else True
    regions = []
    for k, r in enumerate(draw(st.lists(region_st, min_size=1, max_size=4))):
        r = dict(r, name=f"r{k}", pages=draw(st.integers(1, 2)))
        if r["kind"] == "file":
            r["file"] = "src"
            if r["touched"] and (
                r["prot"] == "none" or r["offset"] + (r["pages"] - 1) * P >= src_size
            ):
                r["touched"] = False
        if r["kind"] == "anon":
            if r["prot"] == "none":
                r["touched"] = False
            if r["touched"]:
                r["data"] = f"pattern:{k + 3}"
        regions.append(r)
    total = sum(r["pages"] for r in regions) * P
    nseg = draw(st.integers(1, 3))
    iov = []
    for _ in range(nseg):
        start = draw(st.integers(0, total - 1))
        length = draw(st.integers(0, min(total - start, 3 * P)))
        # Resolve the absolute offset into (region, offset-within-region).
        acc = 0
        for r in regions:
            if start < acc + r["pages"] * P:
                iov.append([r["name"], start - acc, length])
                break
            acc += r["pages"] * P
    op = draw(st.sampled_from(["pwrite", "pwritev", "writev", "write"]))
    if op in ("pwrite", "write"):
        iov = iov[:1]
    call: dict[str, Any] = {"op": op, "iov": iov, "pos": draw(st.integers(0, 4 * P))}
    return {
        "name": "prop",
        "file": [
            {
                "name": "target",
                "fs": fs,
                "size": target_size,
                "data": "pattern:1",
                "cached": cached,
            },
            {"name": "src", "fs": fs, "size": src_size, "data": "pattern:2", "cached": cached},
        ],
        "region": regions,
        "call": [call],
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_writes_are_consistent(doc: dict[str, Any]) -> None:
    s = parse_scenario(doc, "<hypothesis>")
    for design in ("v6.13", "v6.14"):
        r = run_scenario(s, design, keep_events=False)
        assert r.verdict == "ok"
        assert consistency_violations(s, r) == [], (design, doc, r.to_json())
        c = r.calls[0]
        if c.errno == "EFAULT":
            # Nothing copied: the target's bytes are exactly its initial ones.
            assert r.files["target"].read(0, 3 * P).rstrip(b"\0") == bytes(
                (k + 1) % 251 + 1 for k in range(doc["file"][0]["size"])
            ).rstrip(b"\0")
