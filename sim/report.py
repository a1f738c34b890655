"""The pictures a planner looks at: report.html and the same plots as PNGs.

``write_report(result, folder)`` turns a run's summary and tables into one
self-contained ``report.html`` (every image embedded as a data URI, no
script, no link outside the file, readable offline) plus one PNG per plot:

- ``utilization.png``  GPUs allocated over time, stacked by family
- ``queue.png``        queued jobs and queued GPU demand; job waits by family
- ``demand.png``       GPU-hours demanded and served per scaling law
- ``inference.png``    SLO attainment and TTFT/TPOT/E2E latency percentiles
- ``failures.png``     lost GPU-hours, restarts and preemptions
- ``energy_cost.png``  power or energy, and cost

Every table may be missing or empty: a section then says so ("no inference
in this run") instead of failing. Time series are averaged into at most
``MAX_POINTS`` bins so a year-long run renders in seconds.

``load_outputs(folder)`` reads an output folder back (summary.json and the
CSV or Parquet tables) into the same shape as a run's Result, for
``gpusim compare``. ``summary_html(result)`` is the short HTML table a
notebook shows for a Result.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg

from workloads.errors import InputError

# Time series longer than this are averaged into this many equal time bins:
# a year sampled hourly (8,760 rows) or every minute plots as fast as a day.
MAX_POINTS = 1000
# Resolution of every PNG: small files, sharp enough on a laptop screen.
DPI = 100
FIGSIZE = (10.0, 3.6)

PLOTS = ("utilization", "queue", "demand", "inference", "failures", "energy_cost")
FAMILIES = ("pretraining", "post_training", "inference", "trace")
COLORS = {"pretraining": "#1f77b4", "post_training": "#ff7f0e", "inference": "#2ca02c",
          "trace": "#9467bd", "idle": "#dddddd"}
# law names as the summary's `laws` block may spell them -> the family colour
for _alias, _fam in (("pre_training", "pretraining"), ("post-training", "post_training"), ("posttraining", "post_training"),
                     ("test_time_scaling", "inference"), ("test-time scaling", "inference"),
                     ("test_time", "inference"), ("test-time", "inference"), ("tts", "inference")):
    COLORS[_alias] = COLORS[_fam]
_EXTRA_COLORS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#d62728")
COMPLETED_STATES = {"completed", "complete", "done", "finished", "succeeded", "success"}


# ----------------------------------------------------------------- helpers
def _table(obj, name) -> pd.DataFrame:
    df = getattr(obj, name, None)
    if isinstance(df, pd.DataFrame):
        return df
    return pd.DataFrame()


def _summary(obj) -> dict:
    s = getattr(obj, "summary", None)
    return s if isinstance(s, dict) else {}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys: {'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for key, value in (d or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _num(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    return None


def fmt(value, key: str = "") -> str:
    """A number as a person reads it: 12,345 / 0.873 / 1.2e+15 / 45.0%."""
    v = _num(value)
    if v is None:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else html.escape(str(value))
    k = key.lower()
    if (k.endswith("attainment") or k.endswith("utilization_allocated") or k.endswith("fraction")
            or k.startswith("utilization")) and 0 <= v <= 1:
        return f"{100 * v:.1f}%"
    if v != 0 and (abs(v) >= 1e9 or abs(v) < 1e-3):
        return f"{v:.3g}"
    if float(v).is_integer():
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _time_unit(span_s: float) -> tuple[str, float]:
    if span_s <= 2 * 3600:
        return "minutes", 60.0
    if span_s <= 2 * 86400:
        return "hours", 3600.0
    return "days", 86400.0


def downsample(df: pd.DataFrame, time_col: str = "time_s", max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Means of the numeric columns over at most `max_points` equal time bins."""
    if len(df) <= max_points or time_col not in df:
        return df
    t = df[time_col].to_numpy(dtype=float)
    lo, hi = np.nanmin(t), np.nanmax(t)
    if not hi > lo:
        return df.iloc[:: max(1, len(df) // max_points)]
    bins = np.minimum(((t - lo) / (hi - lo) * max_points).astype(int), max_points - 1)
    num = df.select_dtypes(include="number")
    return num.groupby(bins).mean().reset_index(drop=True)


def _family_color(name: str, i: int) -> str:
    return COLORS.get(name, _EXTRA_COLORS[i % len(_EXTRA_COLORS)])


def _families_in(*frames: pd.DataFrame) -> list[str]:
    seen = list(FAMILIES)
    for df in frames:
        if "family" in df:
            for f in df["family"].dropna().astype(str).unique():
                if f not in seen:
                    seen.append(f)
    return seen


def family_columns(util: pd.DataFrame, families: list[str]) -> dict[str, str]:
    """{family: column} of the per-family allocated-GPU columns of utilization.csv.

    Accepts 'pretraining', 'gpus_pretraining', 'pretraining_gpus' and the like."""
    out = {}
    for col in util.columns:
        name = str(col)
        core = name
        for pre in ("gpus_allocated_", "allocated_gpus_", "gpus_", "allocated_"):
            if core.startswith(pre):
                core = core[len(pre):]
                break
        for suf in ("_gpus_allocated", "_allocated_gpus", "_gpus", "_allocated"):
            if core.endswith(suf):
                core = core[: -len(suf)]
                break
        if core in families and core not in out and pd.api.types.is_numeric_dtype(util[col]):
            out[core] = name
    return out


def _queue_columns(util: pd.DataFrame) -> tuple[str | None, str | None]:
    """(queued jobs column, queued GPU demand column) of utilization.csv."""
    jobs_col = gpus_col = None
    for col in util.columns:
        c = str(col).lower()
        if "queue" not in c or not pd.api.types.is_numeric_dtype(util[col]):
            continue
        if "gpu" in c or "demand" in c:
            gpus_col = gpus_col or col
        else:
            jobs_col = jobs_col or col
    return jobs_col, gpus_col


def work_jobs(jobs: pd.DataFrame) -> pd.DataFrame:
    """The jobs that queue for GPUs: all rows but inference serving replicas
    (kind 'serving'), which the autoscaler starts and stops."""
    if jobs.empty or "kind" not in jobs or "family" not in jobs:
        return jobs
    return jobs[~((jobs["family"].astype(str) == "inference") & (jobs["kind"].astype(str) == "serving"))]


def job_waits(jobs: pd.DataFrame, horizon_s: float | None = None) -> pd.Series:
    """Queue wait of each job submitted within the run, in seconds.

    A job still queued at the end waits at least until the end (horizon_s):
    it counts with that wait, so an undersized cluster never looks good
    because its jobs never started."""
    if jobs.empty or "submit_s" not in jobs:
        return pd.Series(dtype=float)
    submit = pd.to_numeric(jobs["submit_s"], errors="coerce")
    start = pd.to_numeric(jobs["start_s"], errors="coerce") if "start_s" in jobs else pd.Series(np.nan, index=jobs.index)
    if horizon_s is None:
        known = pd.concat([start, pd.to_numeric(jobs.get("end_s", start), errors="coerce")])
        horizon_s = float(np.nanmax(known.to_numpy())) if known.notna().any() else float(submit.max())
    keep = submit.notna() & (submit <= horizon_s)
    wait = start.where(start.notna(), horizon_s) - submit
    return wait[keep].clip(lower=0.0).astype(float)


def _finish(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _message_png(text: str) -> bytes:
    fig = Figure(figsize=(FIGSIZE[0], 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#555555")
    return _finish(fig)


def _dur(seconds: float) -> str:
    from workloads.units import format_duration
    return format_duration(seconds)


def _percentiles(values, qs=(50, 90, 99)) -> list[float]:
    arr = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    if arr.size == 0:
        return [float("nan")] * len(qs)
    return [float(np.percentile(arr, q)) for q in qs]


# ------------------------------------------------------------------- plots
@dataclass
class Plot:
    name: str
    title: str
    png: bytes
    empty: str | None = None  # why there is nothing to show, or None
    table: list[tuple[str, str]] = field(default_factory=list)


def plot_utilization(util: pd.DataFrame, families: list[str]) -> Plot:
    title = "Utilization over time, by family"
    if util.empty or "time_s" not in util:
        return Plot("utilization", title, _message_png("no utilization samples in this run"),
                    "no utilization samples in this run")
    fam_cols = family_columns(util, families)
    fam_cols = {f: fam_cols[f] for f in sorted(fam_cols, key=families.index)}
    if not fam_cols and "gpus_allocated" not in util and "gpus_total" not in util:
        msg = "no GPU counts in the utilization samples"
        return Plot("utilization", title, _message_png(msg), msg)
    d = downsample(util)
    span = float(d["time_s"].max() - d["time_s"].min()) if len(d) else 0.0
    unit, scale = _time_unit(span)
    t = d["time_s"].to_numpy(dtype=float) / scale
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    if fam_cols:
        ys = [d[c].fillna(0).to_numpy(dtype=float) for c in fam_cols.values()]
        colors = [_family_color(f, i) for i, f in enumerate(fam_cols)]
        ax.stackplot(t, ys, labels=list(fam_cols), colors=colors, alpha=0.85, step=None)
    elif "gpus_allocated" in d:
        ax.fill_between(t, d["gpus_allocated"].fillna(0), color="#1f77b4", alpha=0.8, label="allocated")
    if "gpus_total" in d:
        ax.plot(t, d["gpus_total"], color="black", lw=1.2, label="GPUs in service")
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("GPUs")
    top = max([float(np.nanmax(d[c])) for c in ("gpus_total", "gpus_allocated") if c in d and len(d)]
              + [float(np.nansum([d[c].max() for c in fam_cols.values()])) if fam_cols else 0.0, 1.0])
    ax.set_ylim(0, top * 1.15)  # room for the legend above the curves
    ax.margins(x=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=6, frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    rows = []
    if "gpus_total" in util and "gpus_allocated" in util:
        tot = pd.to_numeric(util["gpus_total"], errors="coerce").sum()
        if tot > 0:
            rows.append(("mean allocated / in service", fmt(util["gpus_allocated"].sum() / tot, "utilization")))
        rows.append(("peak GPUs allocated", fmt(util["gpus_allocated"].max())))
    for fam, col in fam_cols.items():
        rows.append((f"mean GPUs: {fam}", fmt(util[col].mean())))
    return Plot("utilization", title, _finish(fig), table=rows)


def plot_queue(util: pd.DataFrame, jobs: pd.DataFrame, horizon_s: float | None, families: list[str]) -> Plot:
    title = "Queue length and job waits"
    qjobs, qgpus = _queue_columns(util)
    have_queue = not util.empty and "time_s" in util and (qjobs or qgpus)
    jobs = work_jobs(jobs)
    waits = job_waits(jobs, horizon_s)
    if not have_queue and waits.empty:
        msg = "no queue samples and no jobs in this run"
        return Plot("queue", title, _message_png(msg), msg)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 2, 1)
    if have_queue:
        d = downsample(util)
        unit, scale = _time_unit(float(d["time_s"].max() - d["time_s"].min()))
        t = d["time_s"].to_numpy(dtype=float) / scale
        if qjobs:
            ax.plot(t, d[qjobs], color="#d62728", lw=1.2, label="queued jobs")
            ax.set_ylabel("queued jobs")
        if qgpus:
            ax2 = ax.twinx() if qjobs else ax
            ax2.plot(t, d[qgpus], color="#1f77b4", lw=1.0, alpha=0.7, label="queued GPU demand")
            ax2.set_ylabel("GPUs asked by queued jobs")
            ax2.set_ylim(0, max(1.0, float(d[qgpus].max()) * 1.1))
        ax.set_xlabel(f"time ({unit})")
        if qjobs:
            ax.set_ylim(0, max(1.0, float(d[qjobs].max()) * 1.1))
        ax.margins(x=0)
        ax.grid(alpha=0.3)
        ax.set_title("queue over time", fontsize=10)
        handles = [h for a in fig.axes for h in a.get_lines()]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no queue samples", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax = fig.add_subplot(1, 2, 2)
    rows = []
    if not waits.empty:
        fams = jobs.loc[waits.index, "family"].astype(str) if "family" in jobs else pd.Series("all", index=waits.index)
        unit, scale = _time_unit(max(float(waits.max()), 1.0))
        for i, fam in enumerate(sorted(fams.unique(), key=lambda f: families.index(f) if f in families else 99)):
            w = np.sort(waits[fams == fam].to_numpy()) / scale
            ax.step(w, np.arange(1, len(w) + 1) / len(w), where="post", color=_family_color(fam, i),
                    label=f"{fam} ({len(w)})")
            rows.append((f"wait {fam}: mean / p95", f"{_dur(w.mean() * scale)} / {_dur(np.percentile(w, 95) * scale)}"))
        ax.set_xlim(left=0, right=max(float(waits.max()) / scale * 1.05, 1.0))
        ax.set_xlabel(f"queue wait ({unit})")
        ax.set_ylabel("fraction of jobs")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, frameon=False)
        ax.set_title("job waits (CDF)", fontsize=10)
        rows.insert(0, ("wait all jobs: mean / p95", f"{_dur(waits.mean())} / {_dur(np.percentile(waits, 95))}"))
    else:
        ax.text(0.5, 0.5, "no jobs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    if have_queue and qjobs:
        rows.append(("peak queued jobs", fmt(util[qjobs].max())))
    fig.tight_layout()
    return Plot("queue", title, _finish(fig), table=rows)


def law_blocks(laws: dict) -> dict[str, dict]:
    """The per-law totals of the summary's `laws` block: the entries that
    carry GPU-hours (pretraining, post_training, test_time), in that order."""
    return {k: v for k, v in laws.items() if isinstance(v, dict) and _num(v.get("gpu_hours_demanded")) is not None}


def law_rows(laws: dict) -> list[tuple[str, str]]:
    """Readable rows of the `laws` block: each entry's own numbers (nested
    breakdowns stay in summary.json) and the GPUs needed per GPU kind."""
    rows = []
    for name, block in laws.items():
        if not isinstance(block, dict):
            if _num(block) is not None:
                rows.append((name, fmt(block, name)))
            continue
        for k, v in block.items():
            if not isinstance(v, dict) and _num(v) is not None:
                rows.append((f"{name}: {k}", fmt(v, k)))
    needed = laws.get("gpus_needed", {})
    by_kind = needed.get("by_kind") if isinstance(needed, dict) else None
    for kind, b in (by_kind or {}).items():
        if isinstance(b, dict) and _num(b.get("gpus")) is not None:
            nodes = f" ({fmt(b['nodes'])} nodes of {b.get('system', '?')})" if _num(b.get("nodes")) is not None else ""
            rows.append((f"GPUs needed at peak: {kind}", f"{fmt(b['gpus'])}{nodes}"))
    return rows


def plot_demand(demand: pd.DataFrame, summary: dict, families: list[str]) -> Plot:
    title = "Demand per scaling law"
    laws = summary.get("laws") if isinstance(summary.get("laws"), dict) else {}
    laws = laws if law_blocks(laws) else {}
    have_series = not demand.empty and {"time_s", "family"} <= set(demand.columns) and (
        "gpu_hours_demanded" in demand or "gpu_hours_served" in demand)
    if not have_series and not laws:
        msg = "no demand recorded in this run"
        return Plot("demand", title, _message_png(msg), msg)
    fig = Figure(figsize=FIGSIZE)
    rows = []
    ncols = 2 if (have_series and laws) else 1
    if have_series:
        ax = fig.add_subplot(1, ncols, 1)
        dem = "gpu_hours_demanded" if "gpu_hours_demanded" in demand else "gpu_hours_served"
        piv = demand.pivot_table(index="time_s", columns="family", values=dem, aggfunc="sum").fillna(0.0).sort_index()
        served = (demand.groupby("time_s")["gpu_hours_served"].sum().reindex(piv.index).fillna(0.0)
                  if "gpu_hours_served" in demand else None)
        frame = piv.reset_index()
        if served is not None:
            frame["__served"] = served.to_numpy()
        frame = downsample(frame)
        unit, scale = _time_unit(float(frame["time_s"].max() - frame["time_s"].min()) if len(frame) else 0.0)
        t = frame["time_s"].to_numpy(dtype=float) / scale
        fams = [f for f in piv.columns]
        fams.sort(key=lambda f: families.index(f) if f in families else 99)
        ax.stackplot(t, [frame[f].to_numpy(dtype=float) for f in fams],
                     labels=[f"{f} (test-time scaling)" if f == "inference" else f for f in fams],
                     colors=[_family_color(f, i) for i, f in enumerate(fams)], alpha=0.85)
        if served is not None and dem != "gpu_hours_served":
            ax.plot(t, frame["__served"], color="black", lw=1.0, label="served (all)")
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel("GPU-hours per interval")
        ax.set_ylim(bottom=0)
        ax.margins(x=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
        ax.set_title("GPU-hours demanded by family" + (" (line: served)" if served is not None else ""), fontsize=10)
        tot_dem = demand.groupby("family")[dem].sum()
        for f in fams:
            line = f"{fmt(tot_dem.get(f, 0.0))} demanded"
            if "gpu_hours_served" in demand:
                line += f", {fmt(demand.loc[demand['family'] == f, 'gpu_hours_served'].sum())} served"
            rows.append((f"GPU-hours {f}", line))
    if laws:
        ax = fig.add_subplot(1, ncols, ncols)
        names, dem_v, srv_v = [], [], []
        for law, block in law_blocks(laws).items():
            names.append(law)
            dem_v.append(_num(block.get("gpu_hours_demanded")) or 0.0)
            srv_v.append(_num(block.get("gpu_hours_served")))
        if names:
            x = np.arange(len(names))
            colors = [_family_color(n, i) for i, n in enumerate(names)]
            ax.bar(x - 0.2, dem_v, 0.4, color=colors, label="demanded")
            if any(v is not None for v in srv_v):
                ax.bar(x + 0.2, [v or 0.0 for v in srv_v], 0.4, color=colors, alpha=0.5, hatch="//", label="served")
            ax.set_xticks(x, [n.replace("_", " ") for n in names], fontsize=8)
            ax.set_ylabel("GPU-hours")
            ax.set_title("per scaling law: GPU-hours demanded and served (hatched)", fontsize=10)
            ax.grid(alpha=0.3, axis="y")
        else:
            ax.set_axis_off()
        rows += law_rows(laws)
    fig.tight_layout()
    return Plot("demand", title, _finish(fig), table=rows)


def _slo_targets(scenario) -> tuple[float, float] | None:
    """(ttft_s, tpot_s) when every inference workload shares one SLO."""
    slos = set()
    for w in getattr(scenario, "workloads", None) or []:
        if getattr(w, "family", None) == "inference" and getattr(w, "slo", None) is not None:
            slos.add((float(w.slo.ttft), float(w.slo.tpot)))
    return slos.pop() if len(slos) == 1 else None


def plot_inference(requests: pd.DataFrame, summary: dict, scenario, demand: pd.DataFrame | None = None) -> Plot:
    title = "Inference: SLO attainment and latency"
    inf = summary.get("inference") if isinstance(summary.get("inference"), dict) else {}
    demand = demand if demand is not None else pd.DataFrame()
    have_req = not requests.empty and any(c in requests for c in ("ttft_s", "tpot_s", "e2e_s"))
    if not have_req and not any(_num(v) is not None for v in inf.values()):
        msg = "no inference in this run"
        return Plot("inference", title, _message_png(msg), msg)
    fig = Figure(figsize=FIGSIZE)
    rows = [(k, fmt(v, k)) for k, v in flatten(inf).items() if _num(v) is not None]
    # left: latency percentiles (from requests when present, else the summary);
    # fleet mode has none: GPU-hours the service asked for and got instead
    ax = fig.add_subplot(1, 2, 1)
    metrics = [("TTFT", "ttft"), ("TPOT", "tpot"), ("E2E", "e2e")]
    qs = (50, 90, 99)
    lat = {}
    for q in qs:
        vals = []
        for _, key in metrics:
            if have_req and f"{key}_s" in requests:
                vals.append(_percentiles(requests[f"{key}_s"], (q,))[0])
            else:
                vals.append(_num(inf.get(f"{key}_p{q}_s")) or float("nan"))
        if not all(math.isnan(v) for v in vals):
            lat[q] = vals
    inf_demand = demand[demand["family"].astype(str) == "inference"] if (
        not demand.empty and {"family", "time_s", "gpu_hours_demanded"} <= set(demand.columns)) else pd.DataFrame()
    if lat:
        for j, q in enumerate(qs):
            if q in lat:
                ax.bar(np.arange(len(metrics)) + (j - 1) * 0.25, lat[q], 0.25, label=f"p{q}",
                       color=("#9ecae1", "#4292c6", "#08519c")[j])
        ax.set_xticks(np.arange(len(metrics)), [m for m, _ in metrics])
        ax.set_ylabel("seconds")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, frameon=False)
        ax.set_title("latency percentiles", fontsize=10)
    elif not inf_demand.empty:
        g = inf_demand.groupby("time_s")[[c for c in ("gpu_hours_demanded", "gpu_hours_served")
                                          if c in inf_demand]].sum().reset_index()
        g = downsample(g)
        unit, scale = _time_unit(float(g["time_s"].max() - g["time_s"].min()) if len(g) else 0.0)
        ax.plot(g["time_s"] / scale, g["gpu_hours_demanded"], color="#2ca02c", lw=1.2, label="demanded")
        if "gpu_hours_served" in g:
            ax.plot(g["time_s"] / scale, g["gpu_hours_served"], color="black", lw=0.8, ls="--", label="served")
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel("GPU-hours per interval")
        ax.set_ylim(bottom=0)
        ax.margins(x=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
        ax.set_title("serving GPU-hours: demanded and served", fontsize=10)
    else:
        ax.text(0.5, 0.5, "no latency recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    # right: SLO attainment over time (requests + one shared SLO) or the total
    ax = fig.add_subplot(1, 2, 2)
    slo = _slo_targets(scenario)
    att = _num(inf.get("slo_attainment"))
    has_flag = have_req and "slo_met" in requests
    if have_req and "arrival_s" in requests and (has_flag or (slo and "ttft_s" in requests)):
        r = requests
        if has_flag:  # each request's own verdict (workloads may have different SLOs)
            ok = r["slo_met"].astype(str).str.lower().isin(("true", "1", "1.0"))
        else:
            ok = pd.to_numeric(r["ttft_s"], errors="coerce") <= slo[0]
            if "tpot_s" in r:
                ok &= pd.to_numeric(r["tpot_s"], errors="coerce").fillna(0.0) <= slo[1]
        t = pd.to_numeric(r["arrival_s"], errors="coerce")
        nb = int(min(60, max(5, len(r) // 50)))
        unit, scale = _time_unit(float(t.max() - t.min()) if len(t) else 0.0)
        edges = np.linspace(t.min(), t.max() + 1e-9, nb + 1)
        idx = np.clip(np.digitize(t, edges) - 1, 0, nb - 1)
        frac = pd.Series(ok.to_numpy(dtype=float)).groupby(idx).mean()
        ax.plot((edges[frac.index] + edges[frac.index + 1]) / 2 / scale, frac.to_numpy(), marker=".", color="#2ca02c")
        ax.set_xlabel(f"arrival time ({unit})")
        ax.set_ylabel("requests meeting the SLO")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title("SLO attainment" + (f" (TTFT <= {slo[0]:g} s, TPOT <= {slo[1]:g} s)" if slo else ""), fontsize=10)
        if att is None:
            rows.insert(0, ("slo_attainment", fmt(float(ok.mean()), "slo_attainment")))
    elif att is not None:
        ax.barh([0], [att], height=0.5, color="#2ca02c", label="met")
        ax.barh([0], [1 - att], height=0.5, left=[att], color="#d62728", label="missed")
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of demand (fleet) or requests meeting the SLO")
        ax.legend(fontsize=8, frameon=False, loc="upper right", ncol=2)
        ax.set_title(f"SLO attainment {100 * att:.2f}%", fontsize=10)
    else:
        ax.text(0.5, 0.5, "SLO attainment not recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    if have_req:
        for name, key in metrics:
            if f"{key}_s" in requests:
                p = _percentiles(requests[f"{key}_s"])
                rows.append((f"{name} p50 / p90 / p99 (requests)", " / ".join(f"{fmt(v)} s" for v in p)))
        rows.append(("requests in requests table", fmt(len(requests))))
    fig.tight_layout()
    return Plot("inference", title, _finish(fig), table=rows)


def plot_failures(jobs: pd.DataFrame, util: pd.DataFrame, summary: dict, families: list[str]) -> Plot:
    title = "Failures and lost work"
    cols = [c for c in ("lost_gpu_hours", "restarts", "preemptions") if c in jobs]
    down_col = next((c for c in util.columns if any(w in str(c).lower() for w in ("down", "failed", "repair"))
                     and pd.api.types.is_numeric_dtype(util[c])), None) if not util.empty else None
    total_lost = _num(summary.get("lost_gpu_hours"))
    any_loss = (bool(cols) and jobs[cols].fillna(0).to_numpy(dtype=float).sum() > 0) or bool(total_lost) or (
        down_col is not None and util[down_col].fillna(0).sum() > 0)
    if not any_loss:
        msg = "no failures or preemptions in this run"
        png = _message_png(msg)
        rows = [("lost GPU-hours", fmt(total_lost or 0.0))]
        return Plot("failures", title, png, msg, rows)
    fig = Figure(figsize=FIGSIZE)
    rows = [("lost GPU-hours (summary)", fmt(total_lost))] if total_lost is not None else []
    n = 2 if down_col else 1
    ax = fig.add_subplot(1, n, 1)
    if cols and "family" in jobs:
        g = jobs.groupby(jobs["family"].astype(str))[cols].sum()
        fams = sorted(g.index, key=lambda f: families.index(f) if f in families else 99)
        x = np.arange(len(fams))
        if "lost_gpu_hours" in g:
            ax.bar(x, g.loc[fams, "lost_gpu_hours"], color=[_family_color(f, i) for i, f in enumerate(fams)])
            ax.set_ylabel("lost GPU-hours")
        ax.set_xticks(x, fams)
        ax2 = ax.twinx()
        for j, c in enumerate(c for c in ("restarts", "preemptions") if c in g):
            ax2.plot(x, g.loc[fams, c], marker="os"[j], ls="", color="black", label=c)
        ax2.set_ylabel("count")
        ax2.set_ylim(bottom=0)
        if any(c in g for c in ("restarts", "preemptions")):
            ax2.legend(fontsize=8, frameon=False, loc="upper right")
        ax.set_title("lost work by family (bars) and restarts/preemptions (marks)", fontsize=10)
        for f in fams:
            rows.append((f"{f}: " + ", ".join(cols), ", ".join(fmt(g.loc[f, c]) for c in cols)))
    else:
        ax.bar(["all"], [total_lost or 0.0], color="#d62728")
        ax.set_ylabel("lost GPU-hours")
    if down_col:
        ax = fig.add_subplot(1, 2, 2)
        d = downsample(util)
        unit, scale = _time_unit(float(d["time_s"].max() - d["time_s"].min()))
        ax.plot(d["time_s"] / scale, d[down_col], color="#d62728", lw=1.0)
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel(str(down_col).replace("_", " "))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.set_title("capacity out of service", fontsize=10)
    fig.tight_layout()
    return Plot("failures", title, _finish(fig), table=rows)


def _energy_cost_keys(summary: dict) -> tuple[dict, dict]:
    flat = {k: _num(v) for k, v in flatten(summary).items()}
    energy = {k: v for k, v in flat.items() if v is not None and ("kwh" in k.lower() or "energy" in k.lower())
              and "usd" not in k.lower()}
    cost = {k: v for k, v in flat.items() if v is not None and "usd" in k.lower() and "per_" not in k.lower()}
    return energy, cost


def plot_energy_cost(util: pd.DataFrame, summary: dict) -> Plot:
    title = "Energy and cost"
    energy, cost = _energy_cost_keys(summary)
    power_col = None
    if not util.empty:
        power_col = next((c for c in util.columns if ("power" in str(c).lower() or str(c).lower().endswith("_kw")
                          or str(c).lower().endswith("_w")) and pd.api.types.is_numeric_dtype(util[c])), None)
    if not energy and not cost and power_col is None:
        msg = "no energy or cost figures in this run"
        return Plot("energy_cost", title, _message_png(msg), msg)
    fig = Figure(figsize=FIGSIZE)
    rows = [(k, fmt(v)) for k, v in {**energy, **cost}.items()]
    ax = fig.add_subplot(1, 2, 1)
    if power_col is not None and "time_s" in util:
        d = downsample(util)
        unit, scale = _time_unit(float(d["time_s"].max() - d["time_s"].min()))
        col = str(power_col).lower()
        div, label = (1e3, "power (kW)") if col.endswith("_w") else (
            (1.0, "power (kW)") if col.endswith("_kw") else (1.0, str(power_col).replace("_", " ")))
        ax.plot(d["time_s"] / scale, d[power_col] / div, color="#ff7f0e", lw=1.0)
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.set_title("power over time", fontsize=10)
    elif energy:
        parts = {k: v for k, v in energy.items() if "." in k} or energy
        ax.barh([k.replace("_kwh", "") for k in parts], [v / 1e3 for v in parts.values()], color="#ff7f0e")
        ax.set_xlabel("MWh")
        ax.set_title("energy", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.set_axis_off()
    ax = fig.add_subplot(1, 2, 2)
    if cost:
        ax.barh([k.removeprefix("cost.").replace("_usd", "").replace("_", " ") for k in cost], list(cost.values()),
                color="#8c564b")
        ax.set_xlabel("USD")
        ax.set_title("cost", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.text(0.5, 0.5, "no cost figures", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    fig.tight_layout()
    return Plot("energy_cost", title, _finish(fig), table=rows)


def make_plots(result) -> list[Plot]:
    """All report plots of a Result (or anything with .summary and tables)."""
    summary = _summary(result)
    jobs, util = _table(result, "jobs"), _table(result, "utilization")
    demand, requests = _table(result, "demand"), _table(result, "requests")
    families = _families_in(jobs, demand)
    horizon = _num(summary.get("duration_s"))
    return [
        plot_utilization(util, families),
        plot_queue(util, jobs, horizon, families),
        plot_demand(demand, summary, families),
        plot_inference(requests, summary, getattr(result, "scenario", None), demand),
        plot_failures(jobs, util, summary, families),
        plot_energy_cost(util, summary),
    ]


# -------------------------------------------------------------------- html
KEY_NUMBERS = (
    ("gpus", "GPUs"),
    ("duration_s", "simulated"),
    ("utilization_allocated", "GPU utilization (allocated)"),
    ("jobs_completed", "jobs completed"),
    ("jobs.wait_mean_s", "mean queue wait"),
    ("jobs.wait_p95_s", "p95 queue wait"),
    ("inference.slo_attainment", "inference SLO attainment"),
    ("inference.ttft_p99_s", "TTFT p99"),
    ("lost_gpu_hours", "lost GPU-hours"),
    ("energy_kwh", "energy"),
)


def key_numbers(result) -> list[tuple[str, str]]:
    """(label, formatted value) of the numbers shown on top of the report."""
    from workloads.units import format_duration

    summary = _summary(result)
    flat = flatten(summary)
    waits = job_waits(work_jobs(_table(result, "jobs")), _num(summary.get("duration_s")))
    if not waits.empty:
        flat.setdefault("jobs.wait_mean_s", float(waits.mean()))
        flat.setdefault("jobs.wait_p95_s", float(np.percentile(waits, 95)))
    out = []
    for key, label in KEY_NUMBERS:
        v = _num(flat.get(key))
        if v is None:
            continue
        if key == "jobs_completed" and _num(flat.get("jobs_submitted")):
            text = f"{fmt(v)} / {fmt(flat['jobs_submitted'])}"
        elif key.endswith("_s") and "ttft" not in key:
            text = format_duration(v)
        elif key.endswith("_s"):
            text = f"{v * 1e3:.0f} ms" if v < 1 else f"{v:.2f} s"
        elif key == "energy_kwh":
            text = f"{v / 1e3:,.1f} MWh" if v >= 1e3 else f"{v:,.1f} kWh"
        else:
            text = fmt(v, key)
        out.append((label, text))
    _, cost = _energy_cost_keys(summary)
    total = next((k for k in cost if "total" in k), None) or (next(iter(cost)) if len(cost) == 1 else None)
    if total:
        out.append((total.replace("_usd", "").replace(".", " ").replace("_", " ") + " (USD)", f"${cost[total]:,.0f}"))
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1060px;
color:#222;padding:0 12px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}
.card .v{font-size:19px;font-weight:600}.card .k{font-size:12px;color:#666}
img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left}td.n,th.n{text-align:right}
.empty{color:#777;font-style:italic}
pre{background:#f6f6f6;padding:10px;font-size:12px;overflow:auto;max-height:420px}
nav a{margin-right:12px;font-size:13px}
"""


def _rows_html(rows, cls="") -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td class='n'>{v}</td></tr>" for k, v in rows)
    return f"<table class='{cls}'>{body}</table>"


def _family_table(summary: dict) -> str:
    fams = [(k, v) for k, v in summary.items() if isinstance(v, dict) and k not in ("inference", "laws")] + (
        [("inference", summary["inference"])] if isinstance(summary.get("inference"), dict) else [])
    fams = [(k, flatten(v)) for k, v in fams]
    fams = [(k, {kk: vv for kk, vv in v.items() if _num(vv) is not None}) for k, v in fams]
    fams = [(k, v) for k, v in fams if v]
    if not fams:
        return ""
    keys: list[str] = []
    for _, v in fams:
        keys += [k for k in v if k not in keys]
    head = "<tr><th></th>" + "".join(f"<th class='n'>{html.escape(k)}</th>" for k, _ in fams) + "</tr>"
    body = "".join("<tr><td>" + html.escape(key) + "</td>" + "".join(
        f"<td class='n'>{fmt(v.get(key), key) if key in v else ''}</td>" for _, v in fams) + "</tr>" for key in keys)
    return f"<table>{head}{body}</table>"


def scenario_text(result) -> str:
    """The scenario as YAML (what the run was asked), or '' when unknown."""
    import yaml

    text = getattr(result, "scenario_text", None)
    if isinstance(text, str) and text:
        return text
    sc = getattr(result, "scenario", None)
    if sc is None:
        return ""
    if hasattr(sc, "model_dump"):
        data = sc.model_dump(mode="json", exclude_none=True)
    elif isinstance(sc, dict):
        data = sc
    else:
        return str(sc)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


def render_html(result, plots: list[Plot]) -> str:
    """report.html text: key numbers, one section per plot, tables, scenario."""
    from sim import __version__

    summary = _summary(result)
    sc = getattr(result, "scenario", None)
    name = str(getattr(sc, "name", None) or summary.get("name") or "scenario")
    cards = "".join(f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='k'>{html.escape(k)}</div></div>"
                    for k, v in key_numbers(result))
    nav = "".join(f"<a href='#{p.name}'>{html.escape(p.title.split(':')[0])}</a>" for p in plots)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>gpusim report: {html.escape(name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>gpusim report: {html.escape(name)}</h1>",
        f"<div class='sub'>gpusim {html.escape(__version__)}; scenario seed "
        f"{html.escape(str(getattr(sc, 'seed', summary.get('seed', '-'))))}</div>",
        f"<div class='cards' id='key-numbers'>{cards}</div>",
        f"<nav>{nav}<a href='#summary'>Summary</a><a href='#scenario'>Scenario</a></nav>",
    ]
    for p in plots:
        parts.append(f"<section id='{p.name}'><h2>{html.escape(p.title)}</h2>")
        if p.empty:
            parts.append(f"<p class='empty'>{html.escape(p.empty)}</p>")
        else:
            data = base64.b64encode(p.png).decode("ascii")
            parts.append(f"<img src='data:image/png;base64,{data}' alt='{html.escape(p.title)}'>")
        parts.append(_rows_html(p.table))
        parts.append("</section>")
    top = [(k, fmt(v, k)) for k, v in summary.items() if not isinstance(v, (dict, list))]
    parts.append("<section id='summary'><h2>Summary</h2>" + _rows_html(top) + _family_table(summary) + "</section>")
    text = scenario_text(result)
    parts.append("<section id='scenario'><h2>Scenario</h2>" + (
        f"<pre>{html.escape(text)}</pre>" if text else "<p class='empty'>scenario not recorded</p>") + "</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(result, folder) -> Path:
    """Write report.html and the PNGs (see PLOTS) into `folder`; return report.html's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plots = make_plots(result)
    for p in plots:
        _write_atomic(folder / f"{p.name}.png", p.png)
    path = folder / "report.html"
    _write_atomic(path, render_html(result, plots).encode("utf-8"))
    return path


def summary_html(result) -> str:
    """A short HTML table of the key numbers, for notebooks (_repr_html_)."""
    sc = getattr(result, "scenario", None)
    name = html.escape(str(getattr(sc, "name", None) or "run"))
    rows = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td><td style='text-align:right'>"
                   f"{html.escape(v)}</td></tr>" for k, v in key_numbers(result))
    tables = [f"{n}: {len(_table(result, n)):,} rows" for n in ("jobs", "utilization", "demand", "requests")]
    return (f"<div><b>gpusim result: {name}</b><table>{rows}</table>"
            f"<div style='color:#666;font-size:90%'>{html.escape('; '.join(tables))}</div></div>")


# ------------------------------------------------------------ reading back
@dataclass
class Outputs:
    """A run read back from its output folder (the Result shape, no engine)."""
    folder: Path
    summary: dict
    jobs: pd.DataFrame
    utilization: pd.DataFrame
    demand: pd.DataFrame
    requests: pd.DataFrame
    scenario: Any = None
    scenario_text: str = ""


def _read_table(folder: Path, name: str) -> pd.DataFrame:
    csv, pq = folder / f"{name}.csv", folder / f"{name}.parquet"
    try:
        if csv.exists():
            return pd.read_csv(csv) if csv.stat().st_size > 0 else pd.DataFrame()
        if pq.exists():
            return pd.read_parquet(pq)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {name} table ({exc})", str(csv if csv.exists() else pq),
                         "re-run the simulation to rewrite the folder") from None
    return pd.DataFrame()


def load_outputs(folder) -> Outputs:
    """Read summary.json and the tables of an output folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no output folder {str(folder)!r}", str(folder), "give the folder written by 'gpusim run -o'")
    path = folder / "summary.json"
    if not path.exists():
        raise InputError("not a gpusim output folder: it has no summary.json", str(folder),
                         "give the folder written by 'gpusim run -o'")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"summary.json is not valid JSON ({exc})", str(path), "re-run the simulation") from None
    if not isinstance(summary, dict):
        raise InputError("summary.json is not a JSON object", str(path), "re-run the simulation")
    text = ""
    scenario = None
    for name in ("scenario.yaml", "scenario.yml", "scenario.json"):
        p = folder / name
        if p.exists():
            text = p.read_text(encoding="utf-8", errors="replace")
            try:
                import yaml
                data = yaml.safe_load(text)
                if isinstance(data, dict):
                    from sim.scenario import load_scenario
                    scenario = load_scenario(data, check=False)
            except Exception:  # the echo is informative only; a stale or edited copy must not stop a comparison
                scenario = None
            break
    return Outputs(folder, summary, _read_table(folder, "jobs"), _read_table(folder, "utilization"),
                   _read_table(folder, "demand"), _read_table(folder, "requests"), scenario, text)


# ------------------------------------------------------------------- sweeps
SWEEP_METRICS = ("utilization_allocated", "wait_mean_s", "jobs.wait_p95_s", "inference.slo_attainment",
                 "energy_kwh", "cost.total_usd")


def plot_sweep(table: pd.DataFrame, keys: list[str]) -> bytes | None:
    """Headline metrics against the first swept key, one line per
    combination of the other keys; None when there is nothing to draw."""
    metrics = [m for m in SWEEP_METRICS if m in table and pd.to_numeric(table[m], errors="coerce").notna().any()]
    if not keys or not metrics or len(table) < 2:
        return None
    x_key, others = keys[0], keys[1:]
    numeric_x = pd.api.types.is_numeric_dtype(table[x_key])
    cats = list(dict.fromkeys(table[x_key].astype(str))) if not numeric_x else None
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(FIGSIZE[0], 2.8 * nrows))
    groups = list(table.groupby(others, sort=False)) if others else [((), table)]
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for j, (label, g) in enumerate(groups[:10]):
            g = g.sort_values(x_key) if numeric_x else g
            x = g[x_key] if numeric_x else [cats.index(str(v)) for v in g[x_key]]
            name = ", ".join(f"{k}={v}" for k, v in zip(others, label if isinstance(label, tuple) else (label,)))
            ax.plot(x, pd.to_numeric(g[m], errors="coerce"), marker="o", ms=3, lw=1.2,
                    color=_EXTRA_COLORS[j % len(_EXTRA_COLORS)] if j else "#1f77b4", label=name or None)
        if not numeric_x:
            ax.set_xticks(range(len(cats)), cats, fontsize=7)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i == 0 and others:
            ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return _finish(fig)


def write_sweep_report(table: pd.DataFrame, keys: list[str], folder) -> Path | None:
    """sweep.png and sweep.html (the plot and the table) into folder."""
    png = plot_sweep(table, keys)
    if png is None:
        return None
    folder = Path(folder)
    _write_atomic(folder / "sweep.png", png)
    shown = ["point"] + list(keys) + [m for m in SWEEP_METRICS if m in table] + (["folder"] if "folder" in table else [])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = "".join("<tr>" + "".join(
        (f"<td><a href='{html.escape(str(r[c]))}/report.html'>{html.escape(str(r[c]))}</a></td>" if c == "folder"
         else f"<td class='n'>{fmt(r[c], c)}</td>") for c in shown) + "</tr>" for _, r in table.iterrows())
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>gpusim sweep</title>"
            f"<style>{_CSS}</style></head><body><h1>gpusim sweep: {len(table)} points</h1>"
            f"<img src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}' alt='sweep'>"
            f"<h2>Points</h2><table><tr>{head}</tr>{body}</table>"
            f"<p class='sub'>every metric of every point: sweep.csv</p></body></html>\n")
    path = folder / "sweep.html"
    _write_atomic(path, page.encode("utf-8"))
    return path
