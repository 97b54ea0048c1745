"""Test-suite settings: Hypothesis profiles. (The per-test timeout is pytest-timeout's
``timeout`` in pyproject.toml; a test that needs a different one marks itself.)

pytest's default ``prepend`` import mode puts this folder on sys.path, so the tests import
``helpers`` directly; ``python -m pytest`` from the repository root also makes ``tools``
importable.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
