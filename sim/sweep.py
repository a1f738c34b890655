"""Sweeps: one scenario run over a grid of what-ifs, on a process pool, Ray or Dask.

``sweep(source, {"cluster.nodes": [16, 32], "scheduler.policy": ["fifo",
"backfill"]}, outdir)`` runs every combination, saves each point's outputs
in its own subfolder of ``outdir`` and writes ``outdir/sweep.csv``: one row
per point, the swept keys as columns named by their dotted path, then the
point's metrics; and ``sweep.html`` / ``sweep.png``, the headline metrics
against the first swept key. Every point runs with the scenario's own seed (sweep
``seed`` itself for replications), so a point gives the same numbers on
every backend and every run.

Metrics (``metrics(result)``) are one flat namespace, also used by
capacity targets:

- every number of summary.json, nested blocks joined with dots:
  ``utilization_allocated``, ``energy_kwh``, ``inference.slo_attainment``,
  ``inference.ttft_p99_s``, ``pretraining.<key>``, ``laws.<law>.<key>``;
- from the jobs table (inference serving replicas left out):
  ``jobs.count``, ``jobs.completed_fraction``,
  ``jobs.wait_mean_s``, ``jobs.wait_p50_s``, ``jobs.wait_p95_s``,
  ``jobs.wait_p99_s``, ``jobs.wait_max_s``, ``jobs.gpu_hours``,
  ``jobs.lost_gpu_hours``, ``jobs.restarts``, ``jobs.preemptions``, and per
  family ``jobs.<family>.wait_mean_s`` / ``wait_p95_s`` / ``completed_fraction``;
- ``wait_mean_s`` and ``wait_p95_s``: the same as the jobs.* ones.

A job's wait is start minus submit; a job still queued when the run ends
counts as waiting until the end, so an undersized cluster cannot look good
because its jobs never started. Jobs submitted after the end are left out.
Inference latency metrics come from requests.csv when the summary has none.
"""
from __future__ import annotations

import itertools
import math
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from sim.report import COMPLETED_STATES, flatten, job_waits, work_jobs
from workloads.errors import InputError

BACKENDS = ("local", "ray", "dask")
# Summary keys shown first in sweep.csv, in this order; other metrics follow
# alphabetically and the timings come last (they are the only numbers that
# vary from one run of the same point to the next: see is_timing).
LEADING = ("gpus", "duration_s", "utilization_allocated", "jobs_submitted", "jobs_completed",
           "wait_mean_s", "wait_p95_s", "jobs.completed_fraction", "jobs.wait_mean_s", "jobs.wait_p95_s",
           "inference.slo_attainment", "inference.ttft_p99_s", "inference.tpot_p99_s",
           "lost_gpu_hours", "energy_kwh")
TRAILING = ("events", "events_per_s", "engine_wall_s", "wall_s")


def is_timing(key: str) -> bool:
    """A metric measuring the computer, not the cluster (differs run to run)."""
    return key.endswith("wall_s") or key.endswith("events_per_s")


# --------------------------------------------------------------- metrics
def _num(v) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


def _wait_stats(w: pd.Series, prefix: str) -> dict[str, float]:
    if w.empty:
        return {}
    arr = w.to_numpy(dtype=float)
    return {f"{prefix}wait_mean_s": float(arr.mean()), f"{prefix}wait_p50_s": float(np.percentile(arr, 50)),
            f"{prefix}wait_p95_s": float(np.percentile(arr, 95)), f"{prefix}wait_p99_s": float(np.percentile(arr, 99)),
            f"{prefix}wait_max_s": float(arr.max())}


def _completed(jobs: pd.DataFrame) -> pd.Series:
    if "state" in jobs:
        return jobs["state"].astype(str).str.lower().isin(COMPLETED_STATES)
    if "end_s" in jobs:
        return pd.to_numeric(jobs["end_s"], errors="coerce").notna()
    return pd.Series(False, index=jobs.index)


def metrics(result) -> dict[str, float]:
    """The flat metrics of a Result (see the module docstring for the names)."""
    summary = getattr(result, "summary", None) or {}
    out: dict[str, float] = {}
    for key, value in flatten(summary).items():
        v = _num(value)
        if v is not None:
            out[key] = v
        elif value is None:
            out[key] = float("nan")
    jobs = getattr(result, "jobs", None)
    if isinstance(jobs, pd.DataFrame):
        jobs = work_jobs(jobs)
    horizon = _num(summary.get("duration_s"))
    if isinstance(jobs, pd.DataFrame) and not jobs.empty:
        done = _completed(jobs)
        out["jobs.count"] = float(len(jobs))
        out["jobs.completed_fraction"] = float(done.mean())
        waits = job_waits(jobs, horizon)
        out.update(_wait_stats(waits, "jobs."))
        for col in ("gpu_hours", "lost_gpu_hours", "restarts", "preemptions"):
            if col in jobs:
                out[f"jobs.{col}"] = float(pd.to_numeric(jobs[col], errors="coerce").fillna(0).sum())
        if "family" in jobs:
            fam = jobs["family"].astype(str)
            for f in sorted(fam.unique()):
                sel = fam == f
                out[f"jobs.{f}.count"] = float(sel.sum())
                out[f"jobs.{f}.completed_fraction"] = float(done[sel].mean())
                stats = _wait_stats(waits[sel.reindex(waits.index, fill_value=False)], f"jobs.{f}.")
                out.update({k: v for k, v in stats.items() if "p50" not in k and "p99" not in k})
    elif isinstance(jobs, pd.DataFrame):
        out["jobs.count"] = 0.0
    if "jobs.completed_fraction" not in out and _num(summary.get("jobs_submitted")):
        out["jobs.completed_fraction"] = float(summary.get("jobs_completed") or 0) / float(summary["jobs_submitted"])
    for k in ("wait_mean_s", "wait_p95_s"):
        if f"jobs.{k}" in out:
            out.setdefault(k, out[f"jobs.{k}"])
    req = getattr(result, "requests", None)
    if isinstance(req, pd.DataFrame) and not req.empty:
        for col in ("ttft", "tpot", "e2e"):
            if f"{col}_s" in req:
                vals = pd.to_numeric(req[f"{col}_s"], errors="coerce").dropna().to_numpy(dtype=float)
                if vals.size:
                    for q in (50, 99):
                        out.setdefault(f"inference.{col}_p{q}_s", float(np.percentile(vals, q)))
    return out


def order_columns(keys: Iterable[str]) -> list[str]:
    keys = list(dict.fromkeys(keys))
    lead = [k for k in LEADING if k in keys]
    trail = [k for k in TRAILING if k in keys] + sorted(k for k in keys if is_timing(k) and k not in TRAILING)
    rest = sorted(k for k in keys if k not in lead and k not in trail)
    return lead + rest + trail


# ------------------------------------------------------------ --set values
def parse_value(text: str) -> Any:
    """A value written on the command line: 8 -> int, 0.5 / 1e3 -> float,
    true/false -> bool, null -> None, [..] / {..} -> YAML, else the string
    (units such as 2h or 15T stay strings; the scenario parses them)."""
    import yaml

    t = text.strip()
    if t == "":
        raise InputError("an empty value", t, "give a value between the commas")
    for cast in (int, float):
        try:
            v = cast(t)
            if cast is float and not math.isfinite(v):
                break
            return v
        except ValueError:
            pass
    if t[0] in "[{\"'" or t.lower() in ("true", "false", "yes", "no", "null", "~", "none"):
        try:
            return yaml.safe_load(t) if t.lower() != "none" else None
        except yaml.YAMLError as exc:
            raise InputError(f"cannot read {t!r} ({exc.problem if hasattr(exc, 'problem') else exc})", t,
                             "write a YAML value") from None
    return t


def split_values(text: str) -> list[str]:
    """'a,b,[1,2],{x: 1, y: 2}' -> ['a', 'b', '[1,2]', '{x: 1, y: 2}'] (brackets and quotes kept whole)."""
    out, depth, cur, quote = [], 0, "", None
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$")


def parse_set(text: str, flag: str = "--set") -> tuple[str, list]:
    """'cluster.nodes=8,16,32' -> ('cluster.nodes', [8, 16, 32])."""
    if "=" not in text:
        raise InputError(f"{text!r} has no '='", flag, "write KEY=VALUE[,VALUE...], e.g. cluster.nodes=16,32")
    key, _, values = text.partition("=")
    key = key.strip()
    if not _KEY.match(key):
        raise InputError(f"{key!r} is not a dotted key", flag, "write a path like cluster.nodes or workloads.0.gpus")
    vals = [parse_value(v) for v in split_values(values)]
    return key, vals


def parse_sets(texts: Iterable[str], flag: str = "--set") -> dict[str, list]:
    sets: dict[str, list] = {}
    for t in texts or []:
        key, vals = parse_set(t, flag)
        if key in sets:
            raise InputError(f"{key!r} is given twice", flag, "list all its values in one --set")
        sets[key] = vals
    return sets


def grid(sets: dict[str, list]) -> list[dict]:
    """All combinations, the last key varying fastest."""
    keys = list(sets)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sets[k] for k in keys))]


# ------------------------------------------------------------------ points
def source_for_workers(source):
    """What a worker loads the scenario from: an absolute path, or plain data."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise InputError(f"no scenario file {str(source)!r}", str(source), "check the path")
        return str(p.resolve())
    if isinstance(source, dict):
        return source
    if hasattr(source, "model_dump"):  # a Scenario pickles whole, base_dir (relative trace paths) included
        return source
    raise InputError(f"cannot run a {type(source).__name__}", "scenario", "give a file path, a dict or a Scenario")


def describe(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(the scenario as is)"


def folder_name(index: int, overrides: dict, width: int = 3) -> str:
    """A subfolder name for a point: 003_cluster.nodes=32_scheduler.policy=fifo."""
    parts = [f"{index:0{width}d}"] + [f"{k}={v}" for k, v in overrides.items()]
    name = re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(parts))
    return name[:120]


def check_points(source, points: list[dict], check: bool = True) -> None:
    """Load every point's scenario once, so bad input stops before any run."""
    from sim.scenario import load_scenario

    for ov in points:
        try:
            load_scenario(source, ov, check=check)
        except InputError as exc:
            where = f"point {describe(ov)}" + (f"; {exc.where}" if exc.where else "")
            raise InputError(exc.what, where, exc.fix) from None


def run_point(source, overrides: dict, folder: str | None = None, save: bool = True) -> dict:
    """Run one point (in a worker): its metrics, or {'error': line} on bad input."""
    from sim.api import run

    t0 = time.perf_counter()
    try:
        result = run(source, overrides=overrides)
        if folder is not None and save:
            result.save(folder)
        out = metrics(result)
    except InputError as exc:
        return {"error": exc.line()}
    out.setdefault("wall_s", time.perf_counter() - t0)
    return out


Task = tuple  # (source, overrides, folder, save)


def _bar(total: int, progress: bool, desc: str):
    from tqdm import tqdm

    # disable=None: a bar on a terminal only, never in logs
    return tqdm(total=total, disable=None if progress else True, file=sys.stderr, unit="point", desc=desc,
                leave=False)


def run_tasks(tasks: list[Task], backend: str = "local", workers: int | None = None, address: str | None = None,
              progress: bool = False, fn: Callable = run_point, desc: str = "points") -> list[dict]:
    """fn(*task) for every task, on the chosen backend; results in task order."""
    if backend not in BACKENDS:
        from workloads.errors import unknown_name
        raise unknown_name("backend", backend, BACKENDS, "--backend")
    if workers is not None and workers < 1:
        raise InputError(f"workers is {workers}", "--workers", "give 1 or more")
    if not tasks:
        return []
    with _bar(len(tasks), progress, desc) as bar:
        if backend == "ray":
            return _run_ray(tasks, fn, workers, address, bar)
        if backend == "dask":
            return _run_dask(tasks, fn, workers, address, bar)
        if address:
            raise InputError("--address is for the ray and dask backends", "--address", "drop it or add --backend ray|dask")
        return _run_local(tasks, fn, workers, bar)


def _run_local(tasks, fn, workers, bar) -> list[dict]:
    n = min(workers or os.cpu_count() or 1, len(tasks))
    results: list[Any] = [None] * len(tasks)
    if n <= 1:
        for i, t in enumerate(tasks):
            results[i] = fn(*t)
            bar.update()
        return results
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=n) as pool:
        futs = {pool.submit(fn, *t): i for i, t in enumerate(tasks)}
        try:
            for fut in as_completed(futs):
                results[futs[fut]] = fut.result()
                bar.update()
        except BaseException:
            for f in futs:
                f.cancel()
            raise
    return results


def _missing(package: str, extra: str) -> InputError:
    return InputError(f"the {extra} backend needs the '{package}' package, which is not installed", "--backend",
                      f"pip install 'gpusim[{extra}]'")


def _run_ray(tasks, fn, workers, address, bar) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise _missing("ray", "ray") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                                      logging_level="ERROR")
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers or os.cpu_count() or 1
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise InputError(f"cannot reach the Ray cluster ({exc})", "--address", "check the address (ray://HOST:10001 or HOST:6379)") from None
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        limit = workers or len(tasks)
        results: list[Any] = [None] * len(tasks)
        pending: dict = {}
        nxt = 0
        while nxt < len(tasks) or pending:
            while nxt < len(tasks) and len(pending) < limit:
                pending[remote.remote(*tasks[nxt])] = nxt
                nxt += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
                bar.update()
        return results
    finally:
        if started:
            ray.shutdown()


def _run_dask(tasks, fn, workers, address, bar) -> list[dict]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise _missing("distributed", "dask") from None
    cluster = None
    try:
        if address:
            client = Client(address, timeout="20s")
        else:
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler ({exc})", "--address", "check the address (tcp://HOST:8786)") from None
    try:
        tag = uuid.uuid4().hex[:8]
        futs = [client.submit(fn, *t, key=f"gpusim-{tag}-{i}", pure=False) for i, t in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futs)}
        results: list[Any] = [None] * len(tasks)
        for fut in as_completed(futs):
            results[index[fut.key]] = fut.result()
            bar.update()
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------- sweep
def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def table(points: list[dict], results: list[dict], folders: list[str] | None = None) -> pd.DataFrame:
    """One row per point: point, swept keys, folder, metrics (error if any)."""
    keys = list(dict.fromkeys(k for p in points for k in p))
    metric_keys = order_columns(k for r in results for k in r if k != "error")
    rows = []
    for i, (p, r) in enumerate(zip(points, results)):
        row: dict[str, Any] = {"point": i}
        row.update({k: p.get(k) for k in keys})
        if folders is not None:
            row["folder"] = folders[i]
        row.update({k: r.get(k, float("nan")) for k in metric_keys})
        if any("error" in x for x in results):
            row["error"] = r.get("error", "")
        rows.append(row)
    return pd.DataFrame(rows)


def sweep(source, sets: dict[str, list], outdir, backend: str = "local", workers: int | None = None,
          address: str | None = None, progress: bool = False, save: bool = True,
          runner: Callable | None = None) -> pd.DataFrame:
    """Run every combination of `sets` ({dotted.key: [values]}); write
    outdir/<point>/ (when save) and outdir/sweep.csv; return that table.

    runner(source, overrides, folder, save) -> metrics dict runs one point
    (default run_point: a full simulation); it must be importable by name
    for the process, Ray and Dask backends."""
    for k, vals in sets.items():
        if not isinstance(vals, (list, tuple)) or not vals:
            raise InputError(f"no values for {k!r}", "--set", f"give at least one value: {k}=V1,V2")
    points = grid(dict(sets))
    src = source_for_workers(source)
    check_points(src, points)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(len(points) - 1)))
    names = [folder_name(i, p, width) for i, p in enumerate(points)]
    tasks = [(src, p, str(outdir / n), save) for p, n in zip(points, names)]
    results = run_tasks(tasks, backend, workers, address, progress, fn=runner or run_point)
    df = table(points, results, names if save else None)
    _write_csv(df, outdir / "sweep.csv")
    from sim.report import write_sweep_report
    write_sweep_report(df, list(sets), outdir)
    return df
