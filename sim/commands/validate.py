"""`gpusim validate`: the performance models against published figures,
row by row, with the relative error and its median and worst."""
from __future__ import annotations

import json

from sim.validation_serving import serving_check_rows, serving_rows
from sim.validation_training import summarize, training_rows

NAME = "validate"
HELP = "predicted vs published training (and serving) figures, with the error"
DESCRIPTION = ("Predict every published run the project carries (sim/data/validation/training.csv: Megatron-LM, "
               "MT-NLG, OPT, BLOOM, Llama 2; serving rows once that model has them) and print predicted vs "
               "published, the relative error, and the median and worst |error|. --checks adds the further published "
               "runs the models are checked against: H100/H800-era training (training_checks.csv: Llama 3, "
               "DeepSeek-V3, NeMo / Megatron-Bridge, MosaicML), GB200/B200 training (training_checks_blackwell.csv) "
               "and serving (inference_checks.csv: TensorRT-LLM perf overview).")


def add_arguments(parser):
    parser.add_argument("--training-csv", metavar="FILE",
                        help="validate against another CSV with the columns of shared/validation/training.csv")
    parser.add_argument("--checks", action="store_true",
                        help="also predict the further published runs (H100/H800 and Blackwell training, "
                             "TensorRT-LLM serving), each set with its own summary")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _fmt(x: float) -> str:
    if abs(x) >= 1e5:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _table(rows: list[dict]) -> None:
    print(f"{'family':9s} {'model':16s} {'gpu':10s} {'gpus':>6s} {'metric':20s} {'published':>12s} "
          f"{'predicted':>12s} {'error':>7s}  source")
    for r in rows:
        print(f"{r['family']:9s} {r['model'][:16]:16s} {r['gpu'][:10]:10s} {r['gpus']:6d} {r['metric'][:20]:20s} "
              f"{_fmt(r['published']):>12s} {_fmt(r['predicted']):>12s} {r['error'] * 100:+6.1f}%  {r['source']}")


def _summary_line(name: str, s: dict) -> None:
    if s["rows"]:
        print(f"{name:9s} {s['rows']:3d} rows   median |error| {s['median_abs_error'] * 100:5.1f}%   "
              f"worst {s['worst_abs_error'] * 100:5.1f}%")
    else:
        print(f"{name:9s}   0 rows")


CHECK_SETS = (
    ("training_h100", "training checks: H100/H800-era published runs (training_checks.csv)", lambda: training_rows("checks")),
    ("training_blackwell", "training checks: GB200/B200 published runs (training_checks_blackwell.csv)",
     lambda: training_rows("blackwell")),
    ("serving", "serving checks: TensorRT-LLM perf overview (inference_checks.csv)", serving_check_rows),
)


def run(args) -> int:
    train = training_rows(args.training_csv)
    serve = serving_rows()
    summary = {"training": summarize(train), "serving": summarize(serve), "all": summarize(train + serve)}
    checks = {key: rows() for key, _, rows in CHECK_SETS} if args.checks else {}
    if checks:
        summary["checks"] = {key: summarize(rows) for key, rows in checks.items()}
    if args.json:
        out = {"training": train, "serving": serve, "summary": summary}
        if checks:
            out["checks"] = checks
        print(json.dumps(out))
        return 0
    _table(train + serve)
    print()
    for fam in ("training", "serving", "all"):
        _summary_line(fam, summary[fam])
    for key, title, _ in CHECK_SETS:
        if key in checks:
            print()
            print(title)
            _table(checks[key])
            print()
            _summary_line("checks", summary["checks"][key])
    return 0
