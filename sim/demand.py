"""Demand per scaling law: how much of the fleet each law asks for and gets,
what post-training costs as a multiple of pretraining, when the fleet
saturates, and how many GPUs of each kind would meet every deadline and SLO.

``laws_block(scenario, demand, catalogs)`` builds summary.json's ``laws``
block from a run's demand table (time_s, family, kind, gpu_hours_demanded,
gpu_hours_served) and the scenario itself:

- ``pretraining``, ``post_training``, ``test_time``: GPU-hours demanded and
  served (and per kind), and the FLOPs of the work (pretraining and
  post-training from the jobs' work, test time from the request stream).
- ``post_training_over_pretraining``: post-training compute over the
  pretraining compute of the bases it derives from (the seed's "up to
  30x"), in FLOPs and in GPU-hours, per base model too.
- ``saturation``: the first interval whose demand reaches the fleet's
  capacity or goes unserved in the run, and per pool when the no-queueing
  demand of the work placed there first exceeds its GPUs.
- ``gpus_needed``: the GPUs that run the work with no queueing: every job
  starts at submission and finishes by its deadline (a job too slow for its
  deadline is widened in proportion), every fleet gets the replicas its
  SLOs need; the peak of that concurrent demand, in whole nodes. Given per
  pool as the scenario places work (``by_pool``) and per GPU kind with the
  whole scenario on that kind alone (``by_kind``).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from sim.placement import tightest_estimator
from workloads import scaling_laws as sl
from workloads.errors import InputError

LAWS = ("pretraining", "post_training", "test_time")
"""The three laws, in the order reports show them."""
LAW_OF_FAMILY = {"pretraining": "pretraining", "post_training": "post_training", "inference": "test_time"}

SATURATION_FRACTION = 1.0
"""An interval is saturated when the GPU-hours demanded reach this fraction
of the GPU-hours the fleet has (running plus queued work fills it)."""
UNSERVED_FRACTION = 0.02
"""Demand counts as unserved when served falls short of demanded by more
than this fraction of it."""
UNSERVED_INTERVALS = 2
"""...in at least this many consecutive intervals: a lone short interval is
replicas warming up (autoscaler scale_up_delay), not a fleet out of GPUs."""
INFERENCE_STEPS = 4000
"""Time steps at most used to integrate a fleet's requests and replicas over
the horizon: hourly up to 4000 hours (~5.5 months), coarser beyond (2.2 h
for a year), which keeps the serving-model calls to a few thousand."""


def law_of(family: str) -> Optional[str]:
    return LAW_OF_FAMILY.get(family)


# ----------------------------------------------------------- GPU-hours
def totals_by_law(demand: Optional[pd.DataFrame]) -> dict:
    """{law: {gpu_hours_demanded, gpu_hours_served, by_kind: {...}}}."""
    out = {law: {"gpu_hours_demanded": 0.0, "gpu_hours_served": 0.0, "by_kind": {}} for law in LAWS}
    if demand is None or demand.empty:
        return out
    for (family, kind), g in demand.groupby(["family", "kind"], sort=True):
        law = law_of(family)
        if law is None:
            continue
        dem, srv = float(g["gpu_hours_demanded"].sum()), float(g["gpu_hours_served"].sum())
        out[law]["gpu_hours_demanded"] += dem
        out[law]["gpu_hours_served"] += srv
        k = out[law]["by_kind"].setdefault(str(kind), {"gpu_hours_demanded": 0.0, "gpu_hours_served": 0.0})
        k["gpu_hours_demanded"] += dem
        k["gpu_hours_served"] += srv
    return out


def capacity_gpus(scenario, catalogs) -> int:
    hw = catalogs.hardware
    return sum((p.nodes - p.spare_nodes) * hw.system(p.system).gpus_per_node for p in scenario.cluster.pools)


def saturation(demand: Optional[pd.DataFrame], capacity: int, interval_s: float) -> dict:
    """When the fleet saturates in a run: the first interval whose demand
    reaches the fleet's capacity (``fleet_full_s``) or that starts a run of
    UNSERVED_INTERVALS intervals in which work goes unserved, waiting for
    GPUs it cannot get (``first_unserved_s``);
    ``time_s`` is the earlier of the two."""
    out = {"capacity_gpus": capacity, "time_s": None, "fleet_full_s": None, "first_unserved_s": None,
           "peak_demand_gpus": 0.0, "peak_at_s": None, "unserved_fraction_of_time": 0.0}
    if demand is None or demand.empty or capacity <= 0:
        return out
    per = demand.groupby("time_s")[["gpu_hours_demanded", "gpu_hours_served"]].sum().sort_index()
    times = per.index.to_numpy(dtype=float)
    widths = np.diff(np.append(times, times[-1] + interval_s))
    widths[widths <= 0] = interval_s
    hours = widths / 3600.0
    dem_gpus = per["gpu_hours_demanded"].to_numpy() / hours
    srv_gpus = per["gpu_hours_served"].to_numpy() / hours
    full = np.nonzero(dem_gpus >= SATURATION_FRACTION * capacity * (1 - 1e-9))[0]
    lacking = dem_gpus - srv_gpus > UNSERVED_FRACTION * np.maximum(dem_gpus, 1e-12)
    run_ = np.convolve(lacking.astype(int), np.ones(UNSERVED_INTERVALS, dtype=int), "full")[UNSERVED_INTERVALS - 1:]
    short = np.nonzero(lacking & (run_ >= min(UNSERVED_INTERVALS, len(lacking))))[0]
    k = int(np.argmax(dem_gpus))
    first = [float(times[x[0]]) for x in (full, short) if len(x)]
    out.update(time_s=min(first) if first else None,
               fleet_full_s=float(times[full[0]]) if len(full) else None,
               first_unserved_s=float(times[short[0]]) if len(short) else None,
               peak_demand_gpus=float(dem_gpus[k]), peak_at_s=float(times[k]),
               unserved_fraction_of_time=float(hours[lacking].sum() / hours.sum()) if hours.sum() else 0.0)
    return out


# --------------------------------------------------------------- jobs
def scenario_jobs(scenario, catalogs, force=None, timer=None, pools=None) -> list:
    """The pretraining and post-training Jobs of a scenario as the engine's
    generators make them (same seeds); with `force` (a sim.engine.PoolInfo)
    every job is sized and timed on that pool."""
    from sim.engine import WorkloadContext, build_pools
    from sim.generators import jobs_for_workload
    from sim.placement import WorkTimer

    timer = timer or WorkTimer(catalogs.models)
    pools = pools or build_pools(scenario, catalogs)
    by_name = {p.name: p for p in pools}
    largest = max(pools, key=lambda p: p.gpus)
    estimate = tightest_estimator(pools, timer, force)
    jobs = []
    for i, w in enumerate(scenario.workloads):
        if w.family not in ("pretraining", "post_training"):
            continue
        info = force or (by_name[w.pool] if w.pool else largest)
        ctx = WorkloadContext(scenario=scenario, catalogs=catalogs, workload=w, index=i,
                              rng=np.random.default_rng([scenario.seed, 1000 + i]), horizon_s=scenario.duration,
                              pools=by_name, pool=info, estimate_s=estimate)
        jobs.extend(jobs_for_workload(w, ctx))
    return jobs


# -------------------------------------------------------------- FLOPs
def _fleets(scenario, catalogs, pool_spec=None) -> list:
    from sim.fleet import build_fleet

    pools = {p.name: p for p in scenario.cluster.pools}
    largest = max(pools.values(), key=lambda p: (p.nodes - p.spare_nodes) * catalogs.hardware.system(p.system).gpus_per_node)
    out = []
    for i, w in enumerate(scenario.workloads):
        if w.family != "inference" or w.mode != "fleet":
            continue
        spec = pool_spec or (pools[w.pool] if w.pool else largest)
        out.append(build_fleet(w, i, w.name or f"inference-{i}", scenario, catalogs, 0, spec, scenario.duration))
    return out


def _grid(start: float, end: float) -> np.ndarray:
    """Equal steps covering [start, end): hourly, at most INFERENCE_STEPS."""
    if end <= start:
        return np.zeros(0)
    n = min(max(int(math.ceil((end - start) / 3600.0)), 1), INFERENCE_STEPS)
    return start + (end - start) * np.arange(n) / n


def request_flops(model, input_tokens: float, output_tokens: float, samples: float, verifier_passes: int = 0) -> float:
    """FLOPs of one request: the prompt's prefill, `samples` answers decoded
    over the growing context, and verifier passes re-reading prompt + answer."""
    i, o = float(input_tokens), float(output_tokens)
    prefill = i * model.forward_flops_per_token(i / 2.0)
    decode = samples * o * model.forward_flops_per_token(i + o / 2.0)
    verify = verifier_passes * (i + o) * model.forward_flops_per_token((i + o) / 2.0)
    return prefill + decode + verify


def fleet_flops(fleet) -> dict:
    """Requests and FLOPs a fleet-mode stream asks for over its life, and
    the compute of one request over a single pass of its answer."""
    from sim.fleet import MONTH_S

    w = fleet.workload
    model = fleet.cfg.model
    t = _grid(fleet.start_s, fleet.end_s)
    if len(t) == 0:
        return {"requests": 0.0, "flops": 0.0, "compute_over_single_pass": None}
    dt = (fleet.end_s - fleet.start_s) / len(t)
    mid = t + dt / 2.0
    rate = np.array([fleet.rate(x) for x in mid])
    out_tokens = fleet.output_tokens * w.growth.tokens_per_month ** (mid / MONTH_S)
    flops = np.array([request_flops(model, fleet.input_tokens, o, fleet.samples, w.verifier_passes) for o in out_tokens])
    requests = rate * dt
    answer = w.output_tokens.answer if w.output_tokens.answer is not None else fleet.output_tokens
    single = request_flops(model, fleet.input_tokens, float(answer), 1)
    return {"requests": float(requests.sum()), "flops": float((requests * flops).sum()),
            "compute_over_single_pass": float(flops[0] / single) if single > 0 else None}


def request_mode_flops(workload, result) -> dict:
    """Requests and FLOPs a request-mode workload's simulation completed
    (sim.requests.RequestSimResult: each completed request's own token
    counts, workloads.reasoning's accounting of samples, search and
    verifier passes), and its compute over a single pass of each answer."""
    from workloads.reasoning import TestTimeCompute, request_flops as work_flops, request_work

    model = result.config.model
    search = getattr(workload, "search", None)
    ttc = TestTimeCompute(samples=int(getattr(workload, "samples_per_request", 1) or 1),
                          branching=search.branching if search is not None else 1,
                          depth=search.depth if search is not None else 1,
                          verifier_passes=int(getattr(workload, "verifier_passes", 0) or 0))
    answer = getattr(workload.output_tokens, "answer", None) if workload.output_tokens is not None else None
    df = result.requests
    done = df[df["state"] == "completed"]
    flops = single = 0.0
    for i, o in zip(done["input_tokens"].to_numpy(dtype=float), done["output_tokens"].to_numpy(dtype=float)):
        flops += work_flops(model, request_work(i, o, ttc))
        single += work_flops(model, request_work(i, float(answer) if answer is not None else o))
    return {"requests": float(len(done)), "flops": flops,
            "compute_over_single_pass": flops / single if single > 0 else None}


def post_training_multiple(jobs: list, catalogs) -> dict:
    """Post-training FLOPs over the pretraining FLOPs of the bases they derive
    from: a base pretrained in the scenario counts its run, a catalog base
    its published pretraining tokens (workloads.scaling_laws)."""
    pre_by_model = {}
    for j in jobs:
        if j.family == "pretraining":
            pre_by_model[j.model] = pre_by_model.get(j.model, 0.0) + float(j.meta.get("flops", 0.0))
    post_by_base = {}
    for j in jobs:
        if j.family == "post_training":
            base = j.meta.get("base", j.model)
            post_by_base[base] = post_by_base.get(base, 0.0) + float(j.meta.get("flops", 0.0))
    by_base, pre_total, post_total = {}, 0.0, 0.0
    for base, post in post_by_base.items():
        pre = pre_by_model.get(base)
        source = "scenario"
        if pre is None and base in catalogs.models:
            pre = sl.published_pretraining_flops(catalogs.models.get(base))
            source = "published"
        by_base[base] = {"post_training_flops": post, "pretraining_flops": pre, "pretraining_source": source if pre else None,
                         "multiple": post / pre if pre else None}
        if pre:
            pre_total += pre
            post_total += post
    return {"flops": post_total / pre_total if pre_total else None, "by_base": by_base}


# -------------------------------------------------------- GPUs needed
def _job_spans(jobs, estimate, horizon: float) -> tuple[list, int]:
    """(start, end, GPUs) per job started at submission; a job that would miss
    its deadline is widened in proportion (linear scaling) to end on it."""
    spans, late = [], 0
    for job in jobs:
        if job.submit_s >= horizon:
            continue
        t = estimate(job)
        g = float(job.gpus)
        window = (job.deadline_s - job.submit_s) if job.deadline_s is not None else None
        if window is not None and window > 0 and t > window:
            g, t, late = g * t / window, window, late + 1
        spans.append((job.submit_s, min(job.submit_s + t, horizon), g))
    return spans, late


def _request_mode_gpus(w, grid: np.ndarray, horizon: float) -> np.ndarray:
    gpus = w.tp * w.pp * ((w.disaggregated.prefill_replicas + w.disaggregated.decode_replicas)
                          if w.disaggregated else w.replicas)
    end = w.start + (w.duration or horizon)
    return np.where((grid >= w.start) & (grid < end), float(gpus), 0.0)


def _need(spans: list, inference: np.ndarray, grid: np.ndarray, horizon: float, gpus_per_node: int,
          capacity: Optional[int] = None) -> dict:
    """Peak of concurrent training spans plus inference GPUs, in whole nodes;
    with `capacity`, also when that demand first exceeds it."""
    if spans:
        starts, ends, widths = (np.array(x, dtype=float) for x in zip(*spans))
    else:
        starts = ends = widths = np.zeros(0)
    points = np.unique(np.concatenate([grid, starts]))
    os_, oe = np.argsort(starts), np.argsort(ends)
    cs = np.concatenate([[0.0], np.cumsum(widths[os_])])
    ce = np.concatenate([[0.0], np.cumsum(widths[oe])])
    train = cs[np.searchsorted(starts[os_], points, side="right")] - ce[np.searchsorted(ends[oe], points, side="right")]
    inf_at = inference[np.clip(np.searchsorted(grid, points, side="right") - 1, 0, len(grid) - 1)] \
        if len(grid) else np.zeros(len(points))
    total = train + inf_at
    k = int(np.argmax(total)) if len(total) else 0
    peak = float(total[k]) if len(total) else 0.0
    need = max(peak, float(widths.max()) if len(widths) else 0.0)
    nodes = int(math.ceil(need / gpus_per_node - 1e-9))
    over = np.nonzero(total > capacity + 1e-9)[0] if capacity is not None else []
    train_h = float(np.sum(widths * (ends - starts)) / 3600.0)
    inf_h = float(inference.sum() * (horizon / len(grid)) / 3600.0) if len(grid) else 0.0
    return {"gpus": nodes * gpus_per_node, "nodes": nodes,
            "peak_at_s": float(points[k]) if len(points) else None,
            "training_peak_gpus": float(train.max()) if len(train) else 0.0,
            "inference_peak_gpus": float(inference.max()) if len(inference) else 0.0,
            "average_gpus": (train_h + inf_h) * 3600.0 / horizon,
            "gpu_hours": {"training": train_h, "test_time": inf_h},
            **({"exceeds_capacity_at_s": float(points[over[0]]) if len(over) else None}
               if capacity is not None else {})}


def gpus_needed(scenario, catalogs, *, jobs=None, timer=None, pools=None, fleets=None) -> dict:
    """GPUs that meet every deadline and SLO with no queueing (module docstring):

    - by_pool: each pool of the cluster with the work the scenario puts on
      it (a workload's `pool`, else the largest pool);
    - by_kind: per GPU kind of the cluster, the whole scenario on that kind
      alone.
    A finished run may hand over its jobs, WorkTimer, PoolInfos and fleets
    (sim.engine.SimRun) so that nothing is generated or timed twice."""
    from sim.engine import build_pools
    from sim.placement import WorkTimer

    horizon = scenario.duration
    pools = pools or build_pools(scenario, catalogs)
    largest = max(pools, key=lambda p: p.gpus)
    grid = _grid(0.0, horizon)
    out = {"by_pool": {}, "by_kind": {}}

    # the scenario's own placement of work on pools
    timer = timer or WorkTimer(catalogs.models)
    estimate = tightest_estimator(pools, timer)
    try:
        if jobs is None:
            jobs = scenario_jobs(scenario, catalogs, None, timer, pools)
        jobs = [j for j in jobs if j.family in ("pretraining", "post_training")]
        spans_by = {p.name: [] for p in pools}
        late = {p.name: 0 for p in pools}
        for job in jobs:
            name = job.pool or largest.name
            sp, lt = _job_spans([job], estimate, horizon)
            spans_by[name] += sp
            late[name] += lt
        inf_by = {p.name: np.zeros(len(grid)) for p in pools}
        for i, w in enumerate(scenario.workloads):
            if w.family != "inference":
                continue
            if w.mode == "request":   # on its pool, else the first (sim.fleet.request_pool)
                inf_by[w.pool or pools[0].name] += _request_mode_gpus(w, grid, horizon)
        for f in (fleets if fleets is not None else _fleets(scenario, catalogs)):
            name = f.workload.pool or largest.name
            inf_by[name] += np.array([f.replicas_at(t) * f.replica_gpus for t in grid], dtype=float)
        for p in pools:
            entry = {"system": p.system.name, "gpu": p.gpu.name, "has_gpus": p.gpus}
            entry.update(_need(spans_by[p.name], inf_by[p.name], grid, horizon, p.gpus_per_node, p.gpus))
            entry["jobs_widened_for_deadline"] = late[p.name]
            out["by_pool"][p.name] = entry
    except InputError as exc:
        out["by_pool"] = {"error": exc.line()}

    # everything on one GPU kind (a one-pool cluster: the same as by_pool)
    if len(pools) == 1 and pools[0].name in out["by_pool"]:
        entry = {k: v for k, v in out["by_pool"][pools[0].name].items()
                 if k not in ("gpu", "has_gpus", "exceeds_capacity_at_s")}
        out["by_kind"][pools[0].gpu.name] = entry
        return out
    seen = set()
    for spec, info in zip(scenario.cluster.pools, pools):
        kind = info.gpu.name
        if kind in seen:
            continue
        seen.add(kind)
        entry = {"system": info.system.name}
        try:
            kind_jobs = scenario_jobs(scenario, catalogs, info, timer, pools)
            spans, late = _job_spans(kind_jobs, tightest_estimator(pools, timer, info), horizon)
            inf = np.zeros(len(grid))
            same = fleets is not None and all(
                f.cfg.gpu.name == kind and pools[f.pool].system.name == info.system.name for f in fleets)
            for f in (fleets if same else _fleets(scenario, catalogs, spec)):
                inf += np.array([f.replicas_at(t) * f.replica_gpus for t in grid], dtype=float)
            for w in scenario.workloads:
                if w.family == "inference" and w.mode == "request":
                    inf += _request_mode_gpus(w, grid, horizon)
        except InputError as exc:
            entry.update(gpus=None, nodes=None, error=exc.line())
            out["by_kind"][kind] = entry
            continue
        entry.update(_need(spans, inf, grid, horizon, info.gpus_per_node))
        entry["jobs_widened_for_deadline"] = late
        out["by_kind"][kind] = entry
    return out


# -------------------------------------------------------------- block
def laws_block(scenario, demand: Optional[pd.DataFrame] = None, catalogs=None, *, with_gpus_needed: bool = True,
               jobs=None, timer=None, pools=None, fleets=None, requests=()) -> dict:
    """summary.json's `laws` block (see the module docstring). `jobs`,
    `timer`, `pools`, `fleets`: a finished run's, to reuse (else generated);
    `requests`: (workload, RequestSimResult) of its request-mode workloads."""
    if catalogs is None:
        from sim.scenario import check_scenario
        catalogs = check_scenario(scenario)
    totals = totals_by_law(demand)
    if jobs is None:
        jobs = scenario_jobs(scenario, catalogs, None, timer, pools)
    jobs = [j for j in jobs if j.family in ("pretraining", "post_training")]
    fleets = fleets if fleets is not None else _fleets(scenario, catalogs)
    for law in ("pretraining", "post_training"):
        mine = [j for j in jobs if j.family == law]
        totals[law]["flops"] = sum(float(j.meta.get("flops", 0.0)) for j in mine)
        totals[law]["jobs"] = len(mine)
    tt = {"flops": 0.0, "requests": 0.0, "compute_over_single_pass": None}
    for r in [fleet_flops(f) for f in fleets] + [request_mode_flops(w, res) for w, res in requests]:
        tt["flops"] += r["flops"]
        tt["requests"] += r["requests"]
        if r["compute_over_single_pass"] is not None:
            tt["compute_over_single_pass"] = max(tt["compute_over_single_pass"] or 0.0, r["compute_over_single_pass"])
    totals["test_time"].update(tt)
    multiple = post_training_multiple(jobs, catalogs)
    pre_h = totals["pretraining"]["gpu_hours_demanded"]
    multiple["gpu_hours"] = totals["post_training"]["gpu_hours_demanded"] / pre_h if pre_h > 0 else None
    block = {law: totals[law] for law in LAWS}
    block["post_training_over_pretraining"] = multiple
    block["saturation"] = saturation(demand, capacity_gpus(scenario, catalogs), scenario.outputs.sample_interval)
    if with_gpus_needed:
        need = gpus_needed(scenario, catalogs, jobs=jobs, timer=timer, pools=pools, fleets=fleets)
        block["gpus_needed"] = need
        block["saturation"]["by_pool"] = {name: e.get("exceeds_capacity_at_s") for name, e in need["by_pool"].items()
                                          if isinstance(e, dict)}
    return block


def laws_from_run(sim, demand: Optional[pd.DataFrame]) -> dict:
    """The `laws` block of a finished run (a sim.engine.SimRun)."""
    from sim.scenario import check_scenario

    eng = sim.engine
    catalogs = check_scenario(sim.scenario)
    jobs = [r.job for r in eng.runs[:eng.n_jobs]]
    requests = [(rf.workload, res) for rf, (_, res) in zip(sim.request_fleets, sim.request_results)]
    return laws_block(sim.scenario, demand, catalogs, jobs=jobs, timer=eng.timer, pools=sim.pools, fleets=sim.fleets,
                      requests=requests)


def laws_rows(laws: dict) -> list[tuple[str, str]]:
    """The laws block as (label, text) rows for printed and HTML summaries:
    GPU-hours per law, the post-training multiple, saturation, GPUs needed."""
    from workloads.units import format_duration

    if not isinstance(laws, dict):
        return []
    rows = []
    for law in LAWS:
        b = laws.get(law) or {}
        if b.get("gpu_hours_demanded") or b.get("flops"):
            rows.append((f"{law.replace('_', '-')} GPU-hours",
                         f"{b.get('gpu_hours_demanded', 0.0):,.0f} demanded, {b.get('gpu_hours_served', 0.0):,.0f} served"
                         + (f", {b['flops']:.3g} FLOP" if b.get("flops") else "")))
    mult = (laws.get("post_training_over_pretraining") or {}).get("flops")
    if mult is not None:
        rows.append(("post-training / pretraining", f"{mult:.3g}x compute"))
    sat = laws.get("saturation") or {}
    if "capacity_gpus" in sat:
        t = sat.get("time_s")
        rows.append(("fleet saturates", format_duration(t) if t is not None else "never"))
        for pool, t in (sat.get("by_pool") or {}).items():
            if t is not None:
                rows.append((f"  pool {pool} demand exceeds it", f"at {format_duration(t)}"))
    need = laws.get("gpus_needed") or {}
    for pool, e in (need.get("by_pool") or {}).items():
        if isinstance(e, dict) and e.get("gpus") is not None:
            rows.append((f"GPUs needed, pool {pool}", f"{e['gpus']:,} {e.get('gpu', '')} (has {e.get('has_gpus', 0):,})"))
    for kind, e in (need.get("by_kind") or {}).items():
        if isinstance(e, dict):
            text = f"{e['gpus']:,}" if e.get("gpus") is not None else e.get("error", "n/a")
            rows.append((f"GPUs needed, all on {kind}", text))
    return rows
