"""A finished run as tables and files: jobs, utilization, demand and
requests as DataFrames, the summary as a dict, and an output folder written
atomically (a temporary folder next to OUTDIR renamed into place at the
very end, so a failed or interrupted run never touches earlier results).

Columns scripts rely on (more may follow them):

- jobs.csv: job_id, family, kind, tenant, gpus, submit_s, start_s, end_s,
  state (completed | running | queued | cancelled), gpu_hours,
  lost_gpu_hours, restarts, preemptions; then priority, pool, workload,
  model, wait_s, tiers_spanned, deadline_s.
- utilization.csv: time_s, gpus_total (in service), gpus_allocated,
  gpus_<family> per family, queued_jobs, queued_gpus, gpus_down,
  fragmentation, power_kw (and gpus_pool_<name> with several pools).
- demand.csv: time_s (interval start), family, kind, gpu_hours_demanded,
  gpu_hours_served.
- requests.csv (request-mode inference only): see sim/requests.py.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from workloads.errors import InputError

JOB_COLUMNS = ("job_id", "family", "kind", "tenant", "gpus", "submit_s", "start_s", "end_s", "state", "gpu_hours",
               "lost_gpu_hours", "restarts", "preemptions", "priority", "pool", "workload", "model", "wait_s",
               "tiers_spanned", "deadline_s")
DEMAND_COLUMNS = ("time_s", "family", "kind", "gpu_hours_demanded", "gpu_hours_served")
LAW_OF_FAMILY = {"pretraining": "pretraining", "post_training": "post-training", "inference": "test-time scaling"}
OUTPUT_MARKER = "summary.json"
"""A folder holding this file is a gpusim output folder (safe to replace)."""


# ------------------------------------------------------------------ tables
def jobs_frame(sim) -> pd.DataFrame:
    from sim.engine import PENDING, STATE_NAMES, WAITING

    eng = sim.engine
    pools = [p.info.name for p in eng.pools]
    rows = [r for r in eng.runs if r.state != PENDING and r.state != WAITING]
    nan = float("nan")

    def col(fn, dtype=None):
        return pd.array([fn(r) for r in rows], dtype=dtype) if dtype else [fn(r) for r in rows]

    submit = np.array([r.submit_s for r in rows], dtype=float)
    start = np.array([r.start_s if r.start_s is not None else nan for r in rows], dtype=float)
    end = np.array([r.end_s if r.end_s is not None else nan for r in rows], dtype=float)
    horizon = eng.horizon
    wait = np.where(np.isnan(start), horizon - submit, start - submit)
    df = pd.DataFrame({
        "job_id": col(lambda r: r.job.job_id),
        "family": col(lambda r: r.family),
        "kind": col(lambda r: r.job.kind),
        "tenant": col(lambda r: r.tenant),
        "gpus": np.array([r.gpus for r in rows], dtype=np.int64),
        "submit_s": submit,
        "start_s": start,
        "end_s": end,
        "state": col(lambda r: STATE_NAMES[r.state]),
        "gpu_hours": np.array([r.gpu_s for r in rows], dtype=float) / 3600.0,
        "lost_gpu_hours": np.array([r.lost_s for r in rows], dtype=float) / 3600.0,
        "restarts": np.array([r.restarts for r in rows], dtype=np.int64),
        "preemptions": np.array([r.preemptions for r in rows], dtype=np.int64),
        "priority": np.array([r.priority for r in rows], dtype=np.int64),
        "pool": col(lambda r: pools[r.pool] if r.pool >= 0 else (pools[r.pools[0]] if len(r.pools) == 1 else "")),
        "workload": col(lambda r: r.job.workload or ""),
        "model": col(lambda r: r.job.model or ""),
        "wait_s": wait,
        "tiers_spanned": np.array([r.tiers for r in rows], dtype=np.int64),
        "deadline_s": np.array([r.job.deadline_s if r.job.deadline_s is not None else nan for r in rows], dtype=float),
    }, columns=list(JOB_COLUMNS))
    return df


def utilization_frame(sim) -> pd.DataFrame:
    eng = sim.engine
    fams = list(eng.fam_alloc)
    pools = [p.info.name for p in eng.pools]
    rows = eng.util_rows
    data = {
        "time_s": np.array([r[0] for r in rows], dtype=float),
        "gpus_total": np.array([r[1] for r in rows], dtype=np.int64),
        "gpus_allocated": np.array([r[2] for r in rows], dtype=np.int64),
    }
    for k, f in enumerate(fams):
        data[f"gpus_{f}"] = np.array([r[3][k] for r in rows], dtype=np.int64)
    data["queued_jobs"] = np.array([r[4] for r in rows], dtype=np.int64)
    data["queued_gpus"] = np.array([r[5] for r in rows], dtype=np.int64)
    data["gpus_down"] = np.array([r[6] for r in rows], dtype=np.int64)
    data["fragmentation"] = np.array([r[7] for r in rows], dtype=float)
    data["power_kw"] = np.array([r[8] for r in rows], dtype=float)
    if len(pools) > 1:
        for k, name in enumerate(pools):
            data[f"gpus_pool_{name}"] = np.array([r[9][k] for r in rows], dtype=np.int64)
    return pd.DataFrame(data)


def demand_frame(sim) -> pd.DataFrame:
    rows = sim.engine.demand.rows
    return pd.DataFrame({
        "time_s": np.array([r[0] for r in rows], dtype=float),
        "family": [r[1] for r in rows],
        "kind": [r[2] for r in rows],
        "gpu_hours_demanded": np.array([r[3] for r in rows], dtype=float),
        "gpu_hours_served": np.array([r[4] for r in rows], dtype=float),
    }, columns=list(DEMAND_COLUMNS))


def requests_frame(sim) -> pd.DataFrame:
    frames = []
    for name, res in sim.request_results:
        df = res.requests.copy()
        df.insert(0, "workload", name)
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    from sim.requests import REQUEST_COLUMNS
    cols = [c for c in REQUEST_COLUMNS if c in out] + [c for c in out.columns if c not in REQUEST_COLUMNS]
    return out[cols]


# ----------------------------------------------------------------- summary
def _f(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else None


def _waits(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    w = df["wait_s"].to_numpy(dtype=float)
    return {"wait_mean_s": _f(w.mean()), "wait_p50_s": _f(np.percentile(w, 50)),
            "wait_p95_s": _f(np.percentile(w, 95)), "wait_max_s": _f(w.max())}


def energy_and_cost(sim) -> tuple[float, dict, dict]:
    """(energy kWh, energy block, cost block)."""
    from hardware import power

    eng = sim.engine
    sc = sim.scenario
    horizon = eng.horizon
    total_kwh = 0.0
    per_pool = {}
    cost = {}
    capex = energy_usd = rental = 0.0
    priced = True
    for k, pr in enumerate(eng.pools):
        info, st = pr.info, pr.state
        busy = min(eng.pool_gpu_s[k], st.n * st.gpn * horizon)
        kwh = power.energy_kwh(info.system, info.gpu, st.n, busy, horizon, pue=sc.power.pue)
        per_pool[info.name] = kwh
        total_kwh += kwh
        e_usd = power.electricity_cost_usd(kwh, sc.power.electricity_usd_per_kwh)
        price = sc.cost.gpu_hour_usd
        if isinstance(price, dict):
            price = price.get(info.gpu.name, price.get(info.system.name))
        if price is not None:
            rental += power.rental_cost_usd(st.n * st.gpn * horizon / 3600.0, float(price))
        elif info.system.price_usd is not None:
            own = power.ownership_cost_usd(info.system, st.n, horizon, kwh, sc.cost.amortization_years,
                                           sc.power.electricity_usd_per_kwh)
            capex += own["capex_usd"]
            energy_usd += own["energy_usd"]
        else:
            priced = False
            energy_usd += e_usd
    energy = {"pue": sc.power.pue}
    if len(per_pool) > 1:
        energy.update({f"{name}_kwh": v for name, v in per_pool.items()})
    if rental:
        cost["rental_usd"] = rental
    if capex:
        cost["capex_usd"] = capex
    if energy_usd:
        cost["energy_usd"] = energy_usd
    cost["total_usd"] = rental + capex + energy_usd
    if not priced:
        cost["note"] = "a system has no price: capex left out"
    return total_kwh, energy, cost


FAMILY_KEYS = ("jobs", "completed", "gpu_hours", "lost_gpu_hours", "gpu_hours_demanded", "gpu_hours_served")
"""Keys of a family block, from the cluster's books (jobs.csv, demand.csv)."""
REQUEST_HEADLINE = ("requests_", "ttft_", "tpot_", "e2e_")
"""Request-mode keys (by prefix) copied to the top of the inference block
when fleet-mode workloads share it (counts and latency percentiles)."""


def _placement(fleets: list, horizon: float) -> dict:
    """Replicas the engine held for `fleets`: peak (sum of each fleet's
    peak), started, and the replica-hours asked for but not held."""
    from sim.fleet import replica_seconds

    need = unmet = need_gpu = unmet_gpu = 0.0
    for f in fleets:
        n, u = replica_seconds(f, horizon)
        need, unmet = need + n, unmet + u
        need_gpu, unmet_gpu = need_gpu + n * f.replica_gpus, unmet_gpu + u * f.replica_gpus
    return {"replicas_peak": int(sum(f.peak_replicas for f in fleets)),
            "replicas_started": int(sum(f.replicas_started for f in fleets)),
            "replica_hours_needed": need / 3600.0, "replica_hours_unmet": unmet / 3600.0,
            "demand_served_fraction": 1.0 - unmet_gpu / need_gpu if need_gpu > 0 else 1.0}


def _inference_block(sim, s: dict, horizon: float) -> None:
    """The inference block: the family block (the cluster's books, every
    replica of both modes), the replicas held (replicas_peak,
    replicas_started, replica_hours_needed, replica_hours_unmet,
    demand_served_fraction) and, with request-mode workloads, their
    request-level results (sim.requests.combine_summaries), each
    workload's block with the replicas the cluster held for it.
    slo_attainment: the served demand fraction (fleet mode), the requests'
    attainment (request mode), the lower of the two when both share the
    run (then also slo_attainment_fleet, slo_attainment_requests, and the
    request-level block whole under request_mode)."""
    from sim.requests import combine_summaries

    req_fleets = list(getattr(sim, "request_fleets", None) or [])
    if not sim.fleets and not sim.request_results:
        return
    inf = s.setdefault("inference", {})
    inf["mode"] = "mixed" if sim.fleets and sim.request_results else ("fleet" if sim.fleets else "request")
    inf.update(_placement(list(sim.fleets) + req_fleets, horizon))
    dem, srv = inf.get("gpu_hours_demanded", 0.0), inf.get("gpu_hours_served", 0.0)
    inf["demand_served_fraction"] = srv / dem if dem else 1.0
    fleet_att = None
    if sim.fleets:
        fleet_att = _placement(sim.fleets, horizon)["demand_served_fraction"] if req_fleets \
            else inf["demand_served_fraction"]
        inf["slo_attainment"] = fleet_att
    if not sim.request_results:
        return
    by_name = {f.name: f for f in req_fleets}
    results = []
    for name, res in sim.request_results:
        block = dict(res.summary)
        f = by_name.get(name)
        if f is not None:
            block.update(_placement([f], horizon))
            if block["replica_hours_unmet"] > 0:
                block["note"] = (f"the cluster held fewer than {f.replicas} replicas for "
                                 f"{block['replica_hours_unmet']:.3g} replica-hours; the latencies assume all")
        results.append((name, replace(res, summary=block)))
    req = combine_summaries(results)
    if len(results) > 1:
        req.update(_placement(req_fleets, horizon))
    if fleet_att is None:          # request mode only: the request-level block, the cluster's books kept
        inf.update({k: v for k, v in req.items() if k not in FAMILY_KEYS and k != "demand_served_fraction"})
        if inf["replica_hours_unmet"] > 0 and "note" not in inf:
            inf["note"] = "the cluster held fewer replicas than asked for a while; the latencies assume all"
        return
    inf["request_mode"] = req
    inf.update({k: v for k, v in req.items() if k.startswith(REQUEST_HEADLINE)})
    inf["slo_attainment_fleet"] = fleet_att
    inf["slo_attainment_requests"] = req.get("slo_attainment")
    vals = [v for v in (fleet_att, req.get("slo_attainment")) if v is not None]
    inf["slo_attainment"] = min(vals) if vals else None


def build_summary(sim, jobs: pd.DataFrame, util: pd.DataFrame, demand: pd.DataFrame) -> dict:
    eng = sim.engine
    sc = sim.scenario
    horizon = eng.horizon
    counts = eng.counts
    gpus = eng.nominal_gpus
    cap_h = gpus * horizon / 3600.0
    alloc_h = float(sum(eng.pool_gpu_s)) / 3600.0
    is_replica = (jobs["kind"] == "serving") & (jobs["family"] == "inference") if not jobs.empty else pd.Series(dtype=bool)
    work = jobs[~is_replica] if not jobs.empty else jobs
    kwh, energy_block, cost = energy_and_cost(sim)
    events = eng.events
    wall = eng.wall_s
    s = {
        "name": sc.name,
        "seed": sc.seed,
        "gpus": gpus,
        "nodes": sum(p.info.nodes for p in eng.pools),
        "spare_nodes": sum(p.info.spare_nodes for p in eng.pools),
        "pools": len(eng.pools),
        "duration_s": horizon,
        "gpu_hours_capacity": cap_h,
        "gpu_hours_allocated": alloc_h,
        "utilization_allocated": alloc_h / cap_h if cap_h else 0.0,
        "jobs_submitted": int(len(work)),
        "jobs_completed": int((work["state"] == "completed").sum()) if len(work) else 0,
        "jobs_running": int((work["state"] == "running").sum()) if len(work) else 0,
        "jobs_queued": int((work["state"] == "queued").sum()) if len(work) else 0,
        "jobs_cancelled": int((work["state"] == "cancelled").sum()) if len(work) else 0,
        "jobs_not_submitted": int(sum(1 for r in eng.runs[:eng.n_jobs] if r.state in (0, 1))),
        "lost_gpu_hours": float(jobs["lost_gpu_hours"].sum()) if len(jobs) else 0.0,
        "restarts": int(jobs["restarts"].sum()) if len(jobs) else 0,
        "preemptions": counts["preemptions"],
        "failures": counts["failures"],
        "failures_hitting_jobs": counts["failures_hitting_jobs"],
        "backfilled": counts["backfilled"],
        "fragmentation_mean": _f(util["fragmentation"].mean()) if len(util) else 0.0,
        "energy_kwh": kwh,
        "events": events,
        "wall_s": sim.wall_s,
        "engine_wall_s": wall,
        "events_per_s": events / wall if wall > 0 else None,
        "policy": sc.scheduler.policy,
    }
    s.update({f"jobs_{k}": v for k, v in _waits(work).items()})
    s["placement_tiers"] = {name: n for name, n in zip(("nvlink", "leaf", "spine", "core"), eng.tier_starts)}
    if eng.failure_causes:
        s["failure_causes"] = dict(sorted(eng.failure_causes.items()))
    s["energy"] = energy_block
    if len(util):
        s["energy"].update({"power_mean_kw": _f(util["power_kw"].mean()), "power_peak_kw": _f(util["power_kw"].max())})
    s["cost"] = cost
    if alloc_h and cost.get("total_usd"):
        s["cost"]["usd_per_gpu_hour_allocated"] = cost["total_usd"] / alloc_h
    # one block per family
    fams = list(dict.fromkeys(list(eng.fam_alloc) + (list(jobs["family"].unique()) if len(jobs) else [])))
    for fam in fams:
        fj = jobs[jobs["family"] == fam] if len(jobs) else jobs
        d = demand[demand["family"] == fam] if len(demand) else demand
        block = {
            "jobs": int(len(fj)),
            "completed": int((fj["state"] == "completed").sum()) if len(fj) else 0,
            "gpu_hours": float(fj["gpu_hours"].sum()) if len(fj) else 0.0,
            "lost_gpu_hours": float(fj["lost_gpu_hours"].sum()) if len(fj) else 0.0,
            "gpu_hours_demanded": float(d["gpu_hours_demanded"].sum()) if len(d) else 0.0,
            "gpu_hours_served": float(d["gpu_hours_served"].sum()) if len(d) else 0.0,
        }
        if fam != "inference":
            block.update(_waits(fj))
            if len(fj) and fj["deadline_s"].notna().any():
                dl = fj[fj["deadline_s"].notna()]
                # unfinished at the end counts as missed once the deadline has passed
                late = (dl["end_s"] > dl["deadline_s"]) | (dl["end_s"].isna() & (dl["deadline_s"] <= horizon))
                block["deadlines"] = int(len(dl))
                block["deadlines_missed"] = int(late.sum())
        s[fam] = block
    _inference_block(sim, s, horizon)
    laws = {}
    for fam, law in LAW_OF_FAMILY.items():
        if fam in s and isinstance(s[fam], dict):
            laws[law] = {"gpu_hours_demanded": s[fam].get("gpu_hours_demanded", 0.0),
                         "gpu_hours_served": s[fam].get("gpu_hours_served", 0.0)}
    if laws:
        s["laws"] = laws
    return s


# ------------------------------------------------------------------- files
def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_folder(result, folder: Path, parquet: bool = True, report: bool = True) -> None:
    """Write every output of `result` into `folder` (which exists)."""
    tables = {"jobs": result.jobs, "utilization": result.utilization, "demand": result.demand}
    if result.requests is not None and len(result.requests):
        tables["requests"] = result.requests
    for name, df in tables.items():
        df.to_csv(folder / f"{name}.csv", index=False)
        if parquet:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "summary.json").write_text(json.dumps(_clean(result.summary), indent=2, default=_json_default) + "\n",
                                         encoding="utf-8")
    if report:
        from sim.report import write_report
        write_report(result, folder)


def save_atomic(result, path, parquet: bool = True, report: bool = True) -> Path:
    """Write into a temporary folder next to `path`, then swap it in. An
    existing `path` is replaced only if it is a gpusim output folder (holds
    summary.json) or empty."""
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise InputError(f"output path {str(target)!r} is a file", str(target), "give a folder path")
        if any(target.iterdir()) and not (target / OUTPUT_MARKER).exists():
            raise InputError(f"output folder {str(target)!r} holds other files", str(target),
                             "give a new or empty folder, or an earlier gpusim output folder")
    parent = target.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{target.name}.tmp-{os.getpid()}"
    old = parent / f".{target.name}.old-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write_folder(result, tmp, parquet=parquet, report=report)
        if target.exists():
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    return target
