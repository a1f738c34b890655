"""`gpusim run SCENARIO -o OUTDIR`: simulate a scenario and write its outputs."""
from __future__ import annotations

import json
import sys

from workloads.errors import InputError

NAME = "run"
HELP = "simulate a scenario and write summary.json, jobs/utilization/demand tables and report.html"
DESCRIPTION = (
    "Simulate the cluster and workloads of a scenario file and write into OUTDIR: summary.json, "
    "jobs.csv, utilization.csv, demand.csv (requests.csv when request-mode inference ran), Parquet "
    "copies, report.html and PNG plots. The folder is written atomically: a failed or interrupted "
    "run leaves earlier results in OUTDIR as they were. Progress (simulated time, events/s) goes to "
    "stderr on long runs.")


def add_arguments(parser):
    parser.add_argument("scenario", help="scenario YAML file")
    parser.add_argument("-o", "--output", metavar="OUTDIR", required=True,
                        help="output folder (replaced atomically if it is an earlier gpusim output)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (replaces the scenario's seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario key, e.g. --set cluster.nodes=64 (repeatable; VALUE is YAML)")
    parser.add_argument("--no-report", action="store_true", help="skip report.html and the PNGs")
    parser.add_argument("--no-parquet", action="store_true", help="skip the Parquet copies of the tables")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def parse_sets(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--set {item!r} has no '='", "--set", "write KEY=VALUE, e.g. cluster.nodes=64")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise InputError(f"--set {item!r} has no key", "--set", "write KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


class _Progress:
    """Simulated time and events/s on stderr, one updating line on a
    terminal, a line every few seconds otherwise."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.last = -1e9
        self.shown = False

    def __call__(self, now_s, horizon_s, events, wall_s):
        from workloads.units import format_duration

        done = now_s >= horizon_s
        if not self.tty and not done and wall_s - self.last < 5.0:
            return
        if done and not self.shown:
            return
        self.last = wall_s
        self.shown = True
        rate = events / wall_s if wall_s > 0 else 0.0
        text = (f"simulated {format_duration(now_s)} of {format_duration(horizon_s)} "
                f"({100 * now_s / horizon_s:.0f}%), {events:,} events, {rate:,.0f} events/s")
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if done else "   "))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def run(args) -> int:
    from sim.api import run as run_scenario
    from workloads.units import format_duration

    overrides = parse_sets(args.set)
    result = run_scenario(args.scenario, seed=args.seed, overrides=overrides or None,
                          progress=None if args.quiet else _Progress())
    folder = result.save(args.output, parquet=False if args.no_parquet else None,
                         report=False if args.no_report else None)
    s = result.summary
    if args.json:
        from sim.outputs import _clean
        print(json.dumps(_clean({**s, "output": str(folder)}), default=str))
        return 0
    rows = [
        ("scenario", str(s.get("name"))),
        ("GPUs", f"{s['gpus']:,}"),
        ("simulated", format_duration(s["duration_s"])),
        ("utilization (allocated)", f"{100 * s['utilization_allocated']:.1f}%"),
        ("jobs completed", f"{s['jobs_completed']:,} of {s['jobs_submitted']:,} submitted"),
    ]
    if "jobs_wait_mean_s" in s and s["jobs_wait_mean_s"] is not None:
        rows.append(("mean queue wait", format_duration(s["jobs_wait_mean_s"])))
    inf = s.get("inference") or {}
    if "slo_attainment" in inf:
        rows.append(("inference SLO attainment", f"{100 * inf['slo_attainment']:.1f}%"))
    if inf.get("replica_hours_unmet"):
        rows.append(("replica-hours not serving (warm-up incl.)",
                     f"{inf['replica_hours_unmet']:,.2f} of {inf.get('replica_hours_needed', 0.0):,.2f}"))
    rows.append(("lost GPU-hours", f"{s['lost_gpu_hours']:,.1f}"))
    e = s["energy_kwh"]
    rows.append(("energy", f"{e / 1e3:,.1f} MWh" if e >= 1e3 else f"{e:,.1f} kWh"))
    if s.get("cost", {}).get("total_usd"):
        rows.append(("cost", f"${s['cost']['total_usd']:,.0f}"))
    rate = s.get("events_per_s")
    rows.append(("run time", f"{s['wall_s']:.2f} s ({s['events']:,} events" +
                 (f", {rate:,.0f}/s)" if rate else ")")))
    rows.append(("output", str(folder)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
