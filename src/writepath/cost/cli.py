"""Command-line entry points of the cost model, wired into ``writepath`` by ``writepath.cli``.

``add_bench_arguments(parser)`` adds the cost options of ``writepath bench`` (``WORKLOAD
--profile P [--design D]``, ``--0day``), whose ``bench_main(args)`` the main command line calls
when a workload or ``--0day`` is given (without either, ``writepath bench`` is the model's own
speed bench). ``add_parsers(subparsers)`` registers ``sweep`` and ``profiles``. Every entry
returns 0 or 2 (usage or data error: one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from writepath.cost.profile import ProfileError
from writepath.cost.workload import WorkloadError

#: The designs the cost model prices (the seed's before and after).
COST_DESIGNS = ("v6.13", "v6.14")

#: This machine's profile: the sweep's default.
DEFAULT_PROFILE = "amd-epyc-this-machine"


def _err(message: str) -> int:
    print(f"writepath: {message}", file=sys.stderr)
    return 2


def _load(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from writepath.cost.profile import load_profiles
    from writepath.cost.workload import load_workloads

    return load_profiles(args.profiles_dir), load_workloads(args.workloads_dir)


def _dump(doc: Any, path: str | None) -> None:
    text = json.dumps(doc, indent=2, sort_keys=False)
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


def _save(doc: Any, path: str) -> bool:
    """Write the full JSON to ``path``; False (after one line on stderr) where it cannot."""
    try:
        _dump(doc, path)
    except OSError as e:
        _err(f"cannot write {path}: {e.strerror or e}")
        return False
    return True


def bench_main(args: argparse.Namespace) -> int:
    """Predicted ops/s per design beside the 0day measurement, lkp style or ``--json``."""
    from writepath.cost.render import lkp_table
    from writepath.cost.report import bench_report, issue_json, workload_tallies, zeroday_report
    from writepath.cost.workload import find_workload

    if args.design is not None and args.design not in COST_DESIGNS:
        return _err(
            f"bench: the cost model prices {' and '.join(COST_DESIGNS)}, not {args.design!r}"
        )
    try:
        profiles, workloads = _load(args)
        if args.zeroday:
            if args.workload:
                return _err("bench: --0day takes no WORKLOAD")
            tallies = workload_tallies(w for w in workloads.values() if w.measurements)
            report = zeroday_report(profiles, workloads, tallies)
        else:
            if not args.workload or not args.profile:
                return _err("bench: give WORKLOAD and --profile P, or --0day")
            if args.profile not in profiles:
                return _err(f"bench: no profile {args.profile!r} (known: {', '.join(profiles)})")
            workload = find_workload(workloads, args.workload)
            needed = {workload.name} | {
                m.workload for w in workloads.values() for m in w.measurements
            }
            tallies = workload_tallies(workloads[n] for n in sorted(needed))
            report = bench_report(workload, args.profile, profiles, workloads, tallies)
    except (ProfileError, WorkloadError, KeyError) as e:
        return _err(str(e).strip("'\""))
    if args.save and not _save(report, args.save):
        return 2
    if args.json:
        doc = issue_json(report)
        if args.design:
            for obj in doc if isinstance(doc, list) else [doc]:
                obj["designs"] = {args.design: obj["designs"][args.design]}
        _dump(doc, None)
    else:
        print(lkp_table(report, design=args.design))
    return 0


def sweep_main(args: argparse.Namespace) -> int:
    """Write size x source state x design under one profile: table, JSON, PNG and SVG."""
    from writepath.cost.calibrate import all_rows, calibrate
    from writepath.cost.render import plot_sweep, sweep_table
    from writepath.cost.report import workload_tallies
    from writepath.cost.sweep import run_sweep

    try:
        profiles, workloads = _load(args)
        if args.profile not in profiles:
            return _err(f"sweep: no profile {args.profile!r} (known: {', '.join(profiles)})")
        profile = profiles[args.profile]
        if args.calibrated:
            tallies = workload_tallies(w for w in workloads.values() if w.measurements)
            profile = calibrate(profiles, all_rows(workloads), tallies)[args.profile].profile
        sizes = [int(s, 0) for s in args.sizes.split(",")] if args.sizes else None
        states = args.states.split(",") if args.states else None
        kwargs: dict[str, Any] = {"workers": args.workers}
        if sizes:
            kwargs["sizes"] = sizes
        if states:
            kwargs["states"] = states
        result = run_sweep(profile, **kwargs).to_json()
    except (ProfileError, WorkloadError, ValueError) as e:
        return _err(f"sweep: {e}")
    if args.save and not _save(result, args.save):
        return 2
    if args.json:
        _dump(result, None)
    else:
        print(sweep_table(result))
    if args.plot:
        try:
            paths = plot_sweep(result, args.plot)
        except ImportError:
            return _err("sweep: --plot needs matplotlib (pip install 'writepath[plot]')")
        except OSError as e:
            return _err(f"sweep: cannot write the plot {args.plot}: {e.strerror or e}")
        print("plots: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def profiles_main(args: argparse.Namespace) -> int:
    """List the CPU profiles with the source of every number."""
    from writepath.cost.profile import load_profiles
    from writepath.cost.render import profiles_table

    try:
        profiles = load_profiles(args.profiles_dir)
    except ProfileError as e:
        return _err(str(e))
    docs = [p.to_json() for p in profiles.values()]
    if args.json:
        _dump(docs, None)
    else:
        print(profiles_table(docs, verbose=args.verbose))
    return 0


def _workers(text: str) -> int:
    """A number of worker processes, 1 to 64 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be 1 to 64, not {text}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiles-dir", default=None, help="folder of profile TOML files")
    p.add_argument("--workloads-dir", default=None, help="folder of workload TOML files")


def add_bench_arguments(b: argparse.ArgumentParser) -> None:
    """The cost options of ``writepath bench`` (``--json`` and ``--design`` are the caller's:
    the speed bench shares them)."""
    b.add_argument(
        "workload", nargs="?", metavar="WORKLOAD", help="e.g. pwrite1 or will-it-scale.pwrite1"
    )
    b.add_argument("--profile", help="CPU profile name (writepath profiles)")
    b.add_argument(
        "--0day",
        dest="zeroday",
        action="store_true",
        help="every row of the 0day table, with the held-out error",
    )
    b.add_argument("--save", help="write the full report JSON here")
    _common(b)


def add_parsers(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register ``sweep`` and ``profiles`` on an ``argparse`` subparsers object."""
    s = subparsers.add_parser(
        "sweep",
        help="write size x source state x design: cost per call, crossover, plots",
        parents=list(parents),
        epilog="exit codes: 0 done, 2 usage or invalid profile/size/state, 4 internal error",
    )
    s.add_argument("--profile", default=DEFAULT_PROFILE)
    s.add_argument(
        "--calibrated", action="store_true", help="use the profile as calibrated to the 0day table"
    )
    s.add_argument("--sizes", help="comma-separated sizes (default 1..1048576, powers of 2)")
    s.add_argument("--states", help="comma-separated source states (default: all)")
    s.add_argument("--workers", type=_workers, default=1, help="worker processes (default 1)")
    s.add_argument("--plot", help="write PLOT.png and PLOT.svg")
    s.add_argument("--json", action="store_true")
    s.add_argument("--save", help="write the sweep JSON here")
    _common(s)
    s.set_defaults(func=sweep_main)

    p = subparsers.add_parser(
        "profiles",
        help="CPU cost profiles and the source of every number",
        parents=list(parents),
        epilog="exit codes: 0 done, 2 an invalid profile file, 4 internal error",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="also inherited costs")
    _common(p)
    p.set_defaults(func=profiles_main)
