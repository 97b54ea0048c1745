"""Test-suite settings: Hypothesis profiles and a per-test timeout.

pytest's default ``prepend`` import mode puts this folder on sys.path, so the tests import
``helpers`` directly; ``python -m pytest`` from the repository root also makes ``tools``
importable.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

#: Seconds any one test may run before pytest-timeout fails it: a hang in the model (a loop the
#: no-progress detector misses) must fail the suite, not stall it. The slowest test takes well
#: under a second; the oracle tests take a few.
DEFAULT_TIMEOUT = 60

# CI: the same examples on every run (derandomize), no example database carried between runs,
# so a red CI run is reproducible and a green one means the same thing each time.
settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Local runs: fresh examples each time, to keep finding new ones.
settings.register_profile(
    "dev", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config: pytest.Config) -> None:
    # Without pytest-timeout installed the marker would be unknown; declare it so that the
    # suite still runs (only without the timeout).
    config.addinivalue_line("markers", "timeout(seconds): fail the test after that many seconds")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))
