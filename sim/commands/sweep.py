"""`gpusim sweep`: run a scenario over the grid of every combination of --set values.

Each point's outputs go to their own subfolder of OUTDIR; OUTDIR/sweep.csv
has one row per point: the swept keys (named by their dotted path) and the
point's metrics (see sim.sweep). Points run on a local process pool, a Ray
cluster or a Dask scheduler; every point uses the scenario's seed, so the
numbers do not depend on the backend.
"""
from __future__ import annotations

import json
import math
import sys

from workloads.errors import InputError

NAME = "sweep"
HELP = "run a scenario over a grid of what-ifs (process pool, Ray or Dask)"
DESCRIPTION = ("Run SCENARIO once per combination of the --set values (the full grid), e.g. "
               "--set cluster.nodes=16,32,64 --set scheduler.policy=fifo,backfill runs 6 points. Each point's "
               "outputs (summary.json, tables, report.html) go to OUTDIR/<point>/, and OUTDIR/sweep.csv has one "
               "row per point: the swept keys as columns named by their dotted path, then the metrics "
               "(utilization_allocated, wait_mean_s, jobs.wait_p95_s, inference.slo_attainment, ...). "
               "Values are read as numbers, true/false, or strings (2h and 15T stay as the scenario reads them); "
               "[..] and {..} are YAML. Add --set outputs.report=false to skip the per-point reports.")

# Metrics shown in the human table (all are in sweep.csv).
SHOWN = ("utilization_allocated", "jobs_completed", "wait_mean_s", "wait_p95_s", "inference.slo_attainment",
         "inference.ttft_p99_s", "lost_gpu_hours", "energy_kwh")


def add_backend_arguments(parser):
    parser.add_argument("--backend", default="local", choices=["local", "ray", "dask"],
                        help="where points run: local process pool (default), a Ray cluster, a Dask scheduler")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel points (default: CPU count; with --address, the cluster's capacity)")
    parser.add_argument("--address", default=None,
                        help="Ray address (ray://HOST:10001, HOST:6379, auto) or Dask scheduler (tcp://HOST:8786); "
                             "without it a local Ray/Dask runtime is started")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a dotted scenario key and its values; repeat for more keys (the grid is every combination)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the points and sweep.csv")
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def jsonable(value):
    """NaN -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cell(value, key: str = "") -> str:
    from sim.report import fmt

    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if key.endswith("_s") and isinstance(value, (int, float)) and abs(value) >= 60:
        from workloads.units import format_duration
        return format_duration(value)
    return fmt(value, key)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Plain aligned text: a header line, then one line per row."""
    cells = [[c for c in columns]] + [[cell(r.get(c, float("nan")), c) for c in columns] for r in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in cells)


def run(args) -> int:
    from sim import sweep as sw

    sets = sw.parse_sets(args.set)
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers is {args.workers}", "--workers", "give 1 or more")
    df = sw.sweep(args.scenario, sets, args.output, backend=args.backend, workers=args.workers,
                  address=args.address, progress=not args.no_progress and not args.json)
    rows = df.to_dict(orient="records")
    errors = [r for r in rows if isinstance(r.get("error"), str) and r["error"]]
    csv = f"{args.output.rstrip('/')}/sweep.csv"
    if args.json:
        print(json.dumps(jsonable({"outdir": args.output, "csv": csv, "points": rows})))
    else:
        cols = ["point"] + list(sets) + [c for c in SHOWN if c in df.columns]
        print(format_table(rows, cols))
        print(f"wrote {csv} ({len(rows)} point{'s' if len(rows) != 1 else ''})")
    for r in errors:
        print(f"error: point {r['point']}: {r['error']}", file=sys.stderr)
    return 2 if errors else 0
