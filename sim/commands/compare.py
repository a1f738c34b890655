"""`gpusim compare`: two runs side by side (a what-if), with overlaid plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

from sim.commands.sweep import cell, jsonable

NAME = "compare"
HELP = "compare two output folders side by side (metrics and plots)"
DESCRIPTION = ("Line up the metrics of two output folders (written by gpusim run -o, or two sweep points) with "
               "the change from A to B, and write compare.html, compare.csv and PNGs (utilization, job waits, "
               "inference latency, headline changes) into -o (default: OUTDIR_B/compare-vs-<A>).")


def add_arguments(parser):
    parser.add_argument("a", metavar="OUTDIR_A", help="the baseline run's folder")
    parser.add_argument("b", metavar="OUTDIR_B", help="the what-if run's folder")
    parser.add_argument("-o", "--output", default=None, metavar="DIR", help="where compare.html and the PNGs go")
    parser.add_argument("--all", action="store_true", help="print every metric (default: the headline ones; "
                        "compare.csv always has all)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _shown(metric: str) -> bool:
    from sim.compare import HEADLINE
    from sim.sweep import LEADING

    return metric in HEADLINE or metric in LEADING or metric in ("nodes", "cost.total_usd", "gpu_hours_allocated") or (
        metric.startswith("inference.") and metric.count(".") == 1)


def _change(r) -> str:
    if math.isnan(r["change"]):
        return "-"
    if r["metric"].endswith("_s") and abs(r["change"]) >= 60:
        from workloads.units import format_duration
        text = ("+" if r["change"] > 0 else "-") + format_duration(abs(r["change"]))
    else:
        text = f"{r['change']:+.4g}"
    return text + ("" if math.isnan(r["change_pct"]) else f" ({r['change_pct']:+.1f}%)")


def run(args) -> int:
    from sim.compare import compare, write_comparison

    c = compare(args.a, args.b)
    out = Path(args.output) if args.output else Path(args.b) / f"compare-vs-{Path(args.a).resolve().name}"
    html_path = write_comparison(c, out)
    if args.json:
        d = c.to_dict()
        d["html"] = str(html_path)
        print(json.dumps(jsonable(d)))
        return 0
    rows = [r for r in c.table.to_dict(orient="records") if args.all or _shown(r["metric"])]
    table = [["metric", c.label_a, c.label_b, "change"]]
    for r in rows:
        table.append([r["metric"], cell(r["a"], r["metric"]), cell(r["b"], r["metric"]), _change(r)])
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print(row[0].ljust(widths[0]) + "  " + "  ".join(v.rjust(w) for v, w in zip(row[1:], widths[1:])))
    print(f"wrote {html_path}")
    return 0
