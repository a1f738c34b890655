"""`gpusim capacity`: the smallest value of one scenario knob that meets every target.

Bisection over --vary (more is assumed never to hurt; the table of points
tried shows where that fails), from --min to --max or, without --max,
doubling from the scenario's own value until the targets are met.
"""
from __future__ import annotations

import json

from sim.commands.sweep import add_backend_arguments, format_table, jsonable
from workloads.errors import InputError

NAME = "capacity"
HELP = "smallest cluster (or any numeric knob) that meets the targets"
DESCRIPTION = ("Find the smallest value of --vary (e.g. cluster.nodes, or cluster.pools.1.nodes for one pool of a "
               "mixed cluster) for which every --target holds, e.g. --target 'inference.slo_attainment>=0.99' "
               "--target 'jobs.wait_p95_s<=1h'. Targets use the metric names of sweep.csv; values take units "
               "(1h, 99%%). The search bisects (W workers try W points per round), prints every point tried "
               "and warns when the targets were not monotone in the knob. Exit status 1 when no value in the "
               "range meets the targets. --set fixes other keys, e.g. --set cluster.system=dgx-b200 --vary "
               "cluster.nodes: how many B200 nodes do the work of the scenario's H100 nodes.")


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file")
    parser.add_argument("--vary", required=True, metavar="KEY", help="the numeric dotted key to size, e.g. cluster.nodes")
    parser.add_argument("--target", action="append", default=[], metavar="'METRIC OP VALUE'",
                        help="a target, e.g. 'inference.slo_attainment>=0.99' (OP: >=, <=, >, <); repeat for more")
    parser.add_argument("--min", dest="lo", default=None, metavar="A", help="smallest value to try (default: the step, 1)")
    parser.add_argument("--max", dest="hi", default=None, metavar="B",
                        help="largest value to try (default: double from the scenario's value)")
    parser.add_argument("--step", default=None, metavar="S", help="grid step of the knob (default 1)")
    parser.add_argument("--scan", action="store_true", help="try every value from --min to --max instead of bisecting")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="fix another dotted key for every point, e.g. cluster.system=dgx-b200")
    parser.add_argument("-o", "--output", default=None, metavar="OUTDIR",
                        help="save every point's outputs and capacity.csv here")
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _number(raw, flag):
    if raw is None:
        return None
    from sim.sweep import parse_value

    v = parse_value(raw)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{raw!r} is not a number", flag, "give a number, e.g. 4")
    return v


def run(args) -> int:
    from sim import capacity as cap
    from sim.sweep import parse_sets

    if not args.target:
        raise InputError("no --target given", "gpusim capacity", "add e.g. --target 'jobs.wait_p95_s<=1h'")
    sets = parse_sets(args.set)
    fixed = {}
    for k, vals in sets.items():
        if len(vals) != 1:
            raise InputError(f"--set {k} has {len(vals)} values", "--set", "give one value per key (use gpusim sweep for grids)")
        fixed[k] = vals[0]
    res = cap.search(args.scenario, args.vary, args.target, lo=_number(args.lo, "--min"), hi=_number(args.hi, "--max"),
                     step=_number(args.step, "--step"), fixed=fixed, outdir=args.output, backend=args.backend,
                     workers=args.workers, address=args.address, progress=not args.no_progress and not args.json,
                     scan=args.scan)
    if args.json:
        print(json.dumps(jsonable(res.to_dict())))
    else:
        print(f"capacity search over {args.vary}; targets: " + ", ".join(t.text for t in res.targets))
        cols = [args.vary] + list(dict.fromkeys(t.metric for t in res.targets)) + ["meets_targets"]
        if "error" in res.table.columns:
            cols.append("error")
        print(format_table(res.table.to_dict(orient="records"), cols))
        for note in res.notes:
            print(f"note: {note}")
        if res.value is None:
            print(f"no {args.vary} in the range tried meets every target")
        else:
            print(f"smallest {args.vary} meeting every target: {res.value}")
        if args.output:
            print(f"wrote {args.output.rstrip('/')}/capacity.csv")
    return 0 if res.value is not None else 1
