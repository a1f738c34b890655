"""What-if comparison of two runs: side-by-side metrics and overlaid plots.

``compare(folder_a, folder_b)`` reads two output folders (``gpusim run -o``
or sweep points) and lines up their metrics (the ``sim.sweep.metrics``
namespace) with the change from A to B. ``write_comparison`` writes
``compare.csv``, ``compare.html`` (self-contained, images embedded) and the
plots as PNGs: utilization over time, job waits, inference latency, and the
headline metrics as B relative to A.
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim import report as rp
from sim.sweep import metrics, order_columns

COLOR_A, COLOR_B = "#1f77b4", "#d62728"
# Metrics drawn as "B relative to A" bars, when both runs have them.
# Which way is better: +1 higher, -1 lower, 0 neither (a choice, e.g. GPUs).
HEADLINE = {"utilization_allocated": +1, "jobs.completed_fraction": +1, "jobs.wait_mean_s": -1,
            "jobs.wait_p95_s": -1, "inference.slo_attainment": +1, "inference.ttft_p99_s": -1,
            "inference.tpot_p99_s": -1, "lost_gpu_hours": -1, "energy_kwh": -1, "cost.total_usd": -1, "gpus": 0}


@dataclass
class Comparison:
    a: rp.Outputs
    b: rp.Outputs
    label_a: str
    label_b: str
    table: pd.DataFrame  # metric, a, b, change, change_pct

    def to_dict(self) -> dict:
        rows = self.table.astype(object).where(self.table.notna(), None).to_dict(orient="records")
        return {"a": str(self.a.folder), "b": str(self.b.folder), "label_a": self.label_a, "label_b": self.label_b,
                "metrics": rows}


def _labels(a: Path, b: Path) -> tuple[str, str]:
    la, lb = a.resolve().name, b.resolve().name
    if la == lb:
        la, lb = f"{a.resolve().parent.name}/{la}", f"{b.resolve().parent.name}/{lb}"
    if la == lb:
        la, lb = f"A: {la}", f"B: {lb}"
    return la, lb


def compare(folder_a, folder_b) -> Comparison:
    """Metrics of two output folders side by side."""
    a, b = rp.load_outputs(folder_a), rp.load_outputs(folder_b)
    ma, mb = metrics(a), metrics(b)
    rows = []
    for k in order_columns(list(ma) + list(mb)):
        va, vb = ma.get(k, float("nan")), mb.get(k, float("nan"))
        change = vb - va if not (math.isnan(va) or math.isnan(vb)) else float("nan")
        pct = 100.0 * change / abs(va) if va not in (0.0,) and not math.isnan(change) else float("nan")
        rows.append({"metric": k, "a": va, "b": vb, "change": change, "change_pct": pct})
    la, lb = _labels(Path(folder_a), Path(folder_b))
    return Comparison(a, b, la, lb, pd.DataFrame(rows, columns=["metric", "a", "b", "change", "change_pct"]))


# ------------------------------------------------------------------- plots
def _message(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_axis_off()


def plot_utilization(c: Comparison) -> bytes:
    fig = Figure(figsize=rp.FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    spans = [float(o.utilization["time_s"].max()) for o in (c.a, c.b)
             if not o.utilization.empty and "time_s" in o.utilization]
    unit, scale = rp._time_unit(max(spans) if spans else 0.0)
    for o, label, color in ((c.a, c.label_a, COLOR_A), (c.b, c.label_b, COLOR_B)):
        u = o.utilization
        if u.empty or "time_s" not in u or "gpus_allocated" not in u:
            continue
        d = rp.downsample(u)
        t = d["time_s"] / scale
        ax.plot(t, d["gpus_allocated"], color=color, lw=1.2, label=f"{label}: allocated")
        if "gpus_total" in d:
            ax.plot(t, d["gpus_total"], color=color, lw=0.8, ls="--", label=f"{label}: in service")
        drawn = True
    if drawn:
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel("GPUs")
        ax.set_ylim(bottom=0)
        ax.margins(x=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
        ax.set_title("GPUs allocated over time", fontsize=10)
    else:
        _message(ax, "no utilization samples in either run")
    fig.tight_layout()
    return rp._finish(fig)


def plot_waits_latency(c: Comparison) -> bytes:
    fig = Figure(figsize=rp.FIGSIZE)
    ax = fig.add_subplot(1, 2, 1)
    waits = [(rp.job_waits(o.jobs, rp._num(o.summary.get("duration_s"))), label, color)
             for o, label, color in ((c.a, c.label_a, COLOR_A), (c.b, c.label_b, COLOR_B))]
    waits = [w for w in waits if not w[0].empty]
    if waits:
        unit, scale = rp._time_unit(max(max(float(w.max()) for w, _, _ in waits), 1.0))
        for w, label, color in waits:
            x = np.sort(w.to_numpy()) / scale
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color=color, label=f"{label} ({len(x)} jobs)")
        ax.set_xlabel(f"queue wait ({unit})")
        ax.set_ylabel("fraction of jobs")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
        ax.set_title("job waits (CDF)", fontsize=10)
    else:
        _message(ax, "no jobs in either run")
    ax = fig.add_subplot(1, 2, 2)
    names = [("TTFT p50", "inference.ttft_p50_s"), ("TTFT p99", "inference.ttft_p99_s"),
             ("TPOT p50", "inference.tpot_p50_s"), ("TPOT p99", "inference.tpot_p99_s"),
             ("E2E p99", "inference.e2e_p99_s")]
    t = c.table.set_index("metric")
    names = [(n, k) for n, k in names if k in t.index and not (math.isnan(t.loc[k, "a"]) and math.isnan(t.loc[k, "b"]))]
    if names:
        x = np.arange(len(names))
        ax.bar(x - 0.2, [t.loc[k, "a"] for _, k in names], 0.4, color=COLOR_A, label=c.label_a)
        ax.bar(x + 0.2, [t.loc[k, "b"] for _, k in names], 0.4, color=COLOR_B, label=c.label_b)
        ax.set_xticks(x, [n for n, _ in names], fontsize=8)
        ax.set_ylabel("seconds")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, frameon=False)
        ax.set_title("inference latency", fontsize=10)
    else:
        _message(ax, "no inference in either run")
    fig.tight_layout()
    return rp._finish(fig)


def plot_headline(c: Comparison) -> bytes:
    t = c.table.set_index("metric")
    keys = [k for k in HEADLINE if k in t.index and not math.isnan(t.loc[k, "change_pct"])]
    fig = Figure(figsize=(rp.FIGSIZE[0], 0.5 + 0.35 * max(len(keys), 2)))
    ax = fig.add_subplot(1, 1, 1)
    if keys:
        vals = [t.loc[k, "change_pct"] for k in keys]
        def color(k, v):
            good = HEADLINE[k] * v
            return "#999999" if good == 0 else ("#2ca02c" if good > 0 else "#d62728")
        ax.barh(keys, vals, color=[color(k, v) for k, v in zip(keys, vals)])
        ax.axvline(0, color="black", lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel(f"change from {c.label_a} to {c.label_b} (%); green better, red worse")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3, axis="x")
    else:
        _message(ax, "no headline metric in both runs")
    fig.tight_layout()
    return rp._finish(fig)


def _fmt_change(row) -> str:
    if math.isnan(row["change"]):
        return "-"
    pct = "" if math.isnan(row["change_pct"]) else f" ({row['change_pct']:+.1f}%)"
    return f"{row['change']:+.4g}{pct}"


def write_comparison(c: Comparison, outdir) -> Path:
    """compare.csv, compare.html and the PNGs into outdir; return compare.html's path."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {"compare_headline": plot_headline(c), "compare_utilization": plot_utilization(c),
            "compare_waits_latency": plot_waits_latency(c)}
    for name, data in pngs.items():
        rp._write_atomic(out / f"{name}.png", data)
    from sim.sweep import _write_csv
    _write_csv(c.table, out / "compare.csv")
    rows = "".join(
        f"<tr><td>{html.escape(r.metric)}</td><td class='n'>{rp.fmt(r.a, r.metric)}</td>"
        f"<td class='n'>{rp.fmt(r.b, r.metric)}</td><td class='n'>{html.escape(_fmt_change(r._asdict()))}</td></tr>"
        for r in c.table.itertuples(index=False))
    imgs = "".join(f"<img src='data:image/png;base64,{base64.b64encode(d).decode('ascii')}' alt='{n}'>"
                   for n, d in pngs.items())
    la, lb = html.escape(c.label_a), html.escape(c.label_b)
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>gpusim compare: {la} vs {lb}</title>"
            f"<style>{rp._CSS}</style></head><body><h1>gpusim compare: {la} vs {lb}</h1>"
            f"<div class='sub'>A = {html.escape(str(c.a.folder))}, B = {html.escape(str(c.b.folder))}</div>"
            f"<h2>What changed</h2>{imgs}<h2>Metrics</h2><table><tr><th>metric</th><th class='n'>{la}</th>"
            f"<th class='n'>{lb}</th><th class='n'>change</th></tr>{rows}</table></body></html>\n")
    path = out / "compare.html"
    rp._write_atomic(path, page.encode("utf-8"))
    return path

