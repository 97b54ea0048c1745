"""Runs inside the lab's guest: the catalogue's scenarios through the oracle, as on the host.

``python3 -m writepath.lab.guest SCENARIO_DIR OUT TIMEOUT`` loads every ``*.toml`` of
SCENARIO_DIR with the project's scenario parser and replays each with
``writepath.oracle.run_oracle`` inside one ``FsPool``: the same supervisor, the same forked
child (``oracle/child.py``: setup, canary, ctypes calls, read-back), the same pool making the
same directories (tmpfs in /dev/shm, ext4 in /tmp, ramfs mounted by ``mount -t ramfs``). The
guest's /init arranges the mounts the pool looks for.

What goes to the host is the child's own answer, byte for byte: the oracle decodes it with
``_decode``, and this module wraps that one function to keep a copy of the bytes it is given
(nothing else of the oracle is changed). The host decodes them again with the same schema
checks, so a guest kernel that answers nonsense is caught on the host, and compares the result
with the model. Each scenario becomes one line ``wp-sem {json}``; runs that never produced an
answer (skip, timeout, signal) carry the oracle's verdict and evidence only.

This module runs under the guest's interpreter with only the stdlib and writepath; it must not
import anything the guest lacks (no rich, no third-party package).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

#: Prefixes of the lines the host reads (``writepath.lab.semantics`` parses them).
RECORD_PREFIX = "wp-sem "
BOOT_PREFIX = "wp-sem-boot "
DONE_PREFIX = "wp-sem-done "
#: Evidence text kept per scenario (the oracle's own limit for a child's detail).
MAX_EVIDENCE = 2000


def _emit(out: Any, prefix: str, doc: dict[str, Any]) -> None:
    out.write((prefix + json.dumps(doc, separators=(",", ":")) + "\n").encode())
    out.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python3 -m writepath.lab.guest SCENARIO_DIR OUT TIMEOUT", file=sys.stderr)
        return 2
    scenario_dir, out_path, timeout = Path(argv[0]), argv[1], float(argv[2])
    import writepath.oracle as oracle
    from writepath.mounts import FsPool
    from writepath.results import RunResult
    from writepath.scenario import Scenario, ScenarioError, load_scenario

    answers: list[bytes] = []
    decode = oracle._decode

    def keep_answer(scenario: Scenario, raw: bytes) -> RunResult:
        answers.append(bytes(raw))
        return decode(scenario, raw)

    oracle._decode = keep_answer
    count = 0
    with open(out_path, "wb", buffering=0) as out:
        _emit(out, BOOT_PREFIX, {"release": platform.release(), "pid": os.getpid()})
        with FsPool() as pool:
            for path in sorted(scenario_dir.glob("*.toml")):
                answers.clear()
                record: dict[str, Any] = {"name": path.stem, "raw": None}
                try:
                    scenario = load_scenario(path)
                    record["name"] = scenario.name
                    result = oracle.run_oracle(scenario, pool=pool, timeout=timeout)
                    record["verdict"] = result.verdict
                    record["evidence"] = result.evidence[:MAX_EVIDENCE]
                    if answers:
                        record["raw"] = base64.b64encode(answers[-1]).decode("ascii")
                except ScenarioError as e:
                    record.update(verdict="error", evidence=f"scenario: {e}"[:MAX_EVIDENCE])
                except Exception as e:  # one scenario's failure must not end the replay
                    record.update(verdict="error", evidence=f"{type(e).__name__}: {e}"[:2000])
                _emit(out, RECORD_PREFIX, record)
                count += 1
        _emit(out, DONE_PREFIX, {"scenarios": count})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
