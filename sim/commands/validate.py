"""`gpusim validate`: the performance models against published figures,
row by row, with the relative error and its median and worst."""
from __future__ import annotations

import json

from sim.validation_serving import serving_rows
from sim.validation_training import summarize, training_rows

NAME = "validate"
HELP = "predicted vs published training (and serving) figures, with the error"
DESCRIPTION = ("Predict every published run the project carries (sim/data/validation/training.csv: Megatron-LM, "
               "MT-NLG, OPT, BLOOM, Llama 2; serving rows once that model has them) and print predicted vs "
               "published, the relative error, and the median and worst |error|.")


def add_arguments(parser):
    parser.add_argument("--training-csv", metavar="FILE",
                        help="validate against another CSV with the columns of shared/validation/training.csv")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _fmt(x: float) -> str:
    if abs(x) >= 1e5:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.3g}"


def run(args) -> int:
    train = training_rows(args.training_csv)
    serve = serving_rows()
    summary = {"training": summarize(train), "serving": summarize(serve), "all": summarize(train + serve)}
    if args.json:
        print(json.dumps({"training": train, "serving": serve, "summary": summary}))
        return 0
    rows = train + serve
    head = f"{'family':9s} {'model':16s} {'gpu':10s} {'gpus':>6s} {'metric':20s} {'published':>12s} {'predicted':>12s} {'error':>7s}  source"
    print(head)
    for r in rows:
        print(f"{r['family']:9s} {r['model'][:16]:16s} {r['gpu'][:10]:10s} {r['gpus']:6d} {r['metric'][:20]:20s} "
              f"{_fmt(r['published']):>12s} {_fmt(r['predicted']):>12s} {r['error'] * 100:+6.1f}%  {r['source']}")
    print()
    for fam in ("training", "serving", "all"):
        s = summary[fam]
        if s["rows"]:
            print(f"{fam:9s} {s['rows']:3d} rows   median |error| {s['median_abs_error'] * 100:5.1f}%   "
                  f"worst {s['worst_abs_error'] * 100:5.1f}%")
        else:
            print(f"{fam:9s}   0 rows")
    return 0
