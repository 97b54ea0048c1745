"""The speed bench's report and the size-scaling measurement: shape and checks, no timings."""

from __future__ import annotations

import json
import os

import pytest

from writepath.bench import (
    model_compiled,
    render_scaling,
    render_speed,
    size_scaling,
    speed_report,
)


def test_speed_report_shape_and_checks() -> None:
    doc = speed_report(samples=2, seconds=0.02)
    json.dumps(doc)  # JSON-ready
    for key in ("model_calls_per_s", "kernel_calls_per_s", "ratio", "samples", "design"):
        assert key in doc
    assert doc["design"] == "v6.18"
    assert doc["compiled"] is model_compiled()
    assert doc["kernel_method"] in ("C loop", "Python os.pwrite loop")
    assert len(doc["samples"]) == 2
    for pair in doc["samples"]:
        assert pair["ratio"] == pytest.approx(
            pair["kernel_calls_per_s"] / pair["model_calls_per_s"]
        )
    ratios = sorted(p["ratio"] for p in doc["samples"])
    assert doc["spread"] == {"min": ratios[0], "max": ratios[-1]}
    assert ratios[0] <= doc["ratio"] <= ratios[-1]
    # Every simulated call was checked: at least one batch per sample.
    assert doc["checked_calls"] >= 2 * 200
    text = render_speed(doc)
    assert "median" in text and "slower per call" in text


@pytest.mark.skipif(
    "WRITEPATH_EXPECT_MYPYC" not in os.environ, reason="CI says which build it installed"
)
def test_the_build_ci_installed_is_the_one_under_test() -> None:
    """CI runs the suite twice, on the editable (Python) install and on a WRITEPATH_MYPYC=1
    build; this keeps either run from silently testing the other build."""
    assert model_compiled() is (os.environ["WRITEPATH_EXPECT_MYPYC"] == "1")


def test_speed_report_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        speed_report(samples=0)
    with pytest.raises(ValueError):
        speed_report(seconds=0)


def test_size_scaling_keeps_no_copy_of_the_write() -> None:
    """One pwrite of 1 MiB allocates its 256 new folios and little else: no second copy of the
    data (which would put the peak at twice the size or more)."""
    rows = size_scaling((4096, 1 << 20))
    assert [r["size"] for r in rows] == [4096, 1 << 20]
    big = rows[1]
    assert (1 << 20) <= big["peak_bytes"] < 1.5 * (1 << 20)
    assert "peak/size" in render_scaling(rows)
