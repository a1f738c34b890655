"""The three scaling laws as demand on a fleet: roadmaps, the laws block of
summary.json (totals, post-training multiple, saturation, GPUs needed) and
the what-if responses (derivatives, reasoning tokens, pretraining budget)."""
from pathlib import Path

import pandas as pd
import pytest

from sim.api import run
from sim.catalogs import load_catalogs
from sim.demand import (LAWS, gpus_needed, laws_block, request_flops, saturation,
                        scenario_jobs, totals_by_law)
from sim.engine import build_pools
from sim.placement import tightest_estimator
from sim.generators import YEAR_S, pretraining_runs
from sim.scenario import load_scenario
from workloads import post_training as pt
from workloads import scaling_laws as sl

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "three-laws.yaml"
CAT = load_catalogs(None)
H100 = {"system": "dgx-h100", "nodes": 64}


def _data(workloads, duration="30d", cluster=None, **extra):
    return {"cluster": cluster or H100, "duration": duration, "workloads": workloads, **extra}


def _sc(*args, **kw):
    return load_scenario(_data(*args, **kw))


# ------------------------------------------------------------- roadmap
def test_roadmap_grows_compute_and_sizes_optimally():
    sc = _sc([{"family": "pretraining", "name": "lab", "gpus": 512, "submit": "10d",
               "roadmap": {"start_compute": 1e24, "growth_per_year": 4, "every": "6mo"}}], duration="2y")
    runs = pretraining_runs(sc.workloads[0], 0, CAT.models, sc.duration)
    assert len(runs) == 4                                  # 10d, 6.1mo, 12.1mo, 18.1mo < 2y
    for k, r in enumerate(runs):
        assert r.submit_s == pytest.approx(10 * 86400 + k * 6 * 30.4375 * 86400)
        assert r.compute == pytest.approx(1e24 * 4 ** (k * 0.5 * 30.4375 * 12 / 365.25), rel=1e-9)
        assert r.tokens / r.params == pytest.approx(20.0)
        assert r.model.params_total == pytest.approx(r.params, rel=0.08)
        assert r.deadline_s == pytest.approx(r.submit_s + 6 * 30.4375 * 86400)
    assert runs[2].compute / runs[0].compute == pytest.approx(4.0, rel=1e-9)


def test_roadmap_fit_rule_and_count():
    sc = _sc([{"family": "pretraining", "gpus": 512,
               "roadmap": {"start_compute": 1e24, "every": "3mo", "count": 2, "rule": "fit", "fit": "epoch"}}])
    runs = pretraining_runs(sc.workloads[0], 0, CAT.models, sc.duration)
    assert len(runs) == 2                                  # count wins over the 30-day horizon
    n, d = sl.compute_optimal(1e24, "fit", "epoch")
    assert (runs[0].params, runs[0].tokens) == pytest.approx((n, d))


def test_larger_pretraining_budget_follows_compute_optimal_sizes():
    def job(c):
        sc = _sc([{"family": "pretraining", "compute": c, "gpus": 256}])
        [j] = scenario_jobs(sc, CAT)
        return j
    small, big = job(1e23), job(1e25)
    assert big.meta["params"] / small.meta["params"] == pytest.approx(10.0)
    assert big.meta["tokens"] / small.meta["tokens"] == pytest.approx(10.0)
    assert big.work.model.params_total > 5 * small.work.model.params_total
    assert big.work.tokens == pytest.approx(big.meta["tokens"])


def test_single_run_forms():
    sc = _sc([{"family": "pretraining", "model": "llama3-8b", "tokens": "1T", "gpus": 64},
              {"family": "pretraining", "model": "llama3-8b", "compute": 6e22, "gpus": 64},
              {"family": "pretraining", "params": "3B", "tokens": "60B", "gpus": 64}])
    a, b, c = scenario_jobs(sc, CAT)
    p = CAT.models.get("llama3-8b").params_total
    assert a.work.tokens == 1e12 and a.model == "llama3-8b"
    assert b.work.tokens == pytest.approx(6e22 / (6 * p))
    assert c.meta["flops_6nd"] == pytest.approx(6 * 3e9 * 60e9)
    assert len({a.job_id, b.job_id, c.job_id}) == 3


# ---------------------------------------------------------- saturation
def _demand(rows):
    return pd.DataFrame(rows, columns=["time_s", "family", "kind", "gpu_hours_demanded", "gpu_hours_served"])


def test_saturation_closed_form():
    # 100 GPUs, hourly intervals: demand 50, 80 (a lone 5% shortfall: warm-up),
    # 100 (full), then 120 and 130 with 100 served (out of GPUs)
    d = _demand([(0, "pretraining", "pretrain", 50, 50), (3600, "pretraining", "pretrain", 80, 76),
                 (7200, "inference", "serving", 100, 100), (10800, "inference", "serving", 120, 100),
                 (14400, "inference", "serving", 130, 100)])
    s = saturation(d, 100, 3600)
    assert s["fleet_full_s"] == 7200 and s["first_unserved_s"] == 10800 and s["time_s"] == 7200
    assert s["peak_demand_gpus"] == pytest.approx(130) and s["peak_at_s"] == 14400
    assert s["unserved_fraction_of_time"] == pytest.approx(0.6)
    light = saturation(d[d.time_s < 7200], 100, 3600)
    assert light["time_s"] is None and light["first_unserved_s"] is None


def test_totals_by_law_sum_the_table():
    d = _demand([(0, "pretraining", "pretrain", 5, 4), (0, "post_training", "lora", 2, 2),
                 (3600, "post_training", "rl", 3, 1), (0, "inference", "serving", 7, 6), (0, "trace", "x", 9, 9)])
    t = totals_by_law(d)
    assert t["post_training"]["gpu_hours_demanded"] == 5 and t["post_training"]["gpu_hours_served"] == 3
    assert t["post_training"]["by_kind"]["rl"] == {"gpu_hours_demanded": 3, "gpu_hours_served": 1}
    assert t["test_time"]["gpu_hours_demanded"] == 7
    assert sum(t[law]["gpu_hours_demanded"] for law in LAWS) == 17   # trace is no law


# --------------------------------------------------------- GPUs needed
def test_gpus_needed_adds_overlaps_and_widens_for_deadlines():
    pre = {"family": "pretraining", "params": "8B", "tokens": "200B", "gpus": 64}
    sc = _sc([pre, dict(pre, submit="1h")], duration="60d")
    need = gpus_needed(sc, CAT)["by_pool"]["dgx-h100"]
    assert need["training_peak_gpus"] == 128 and need["gpus"] == 128
    # a deadline half the run's length needs twice the GPUs (linear scaling)
    pools = build_pools(sc, CAT)
    [job] = scenario_jobs(_sc([pre], duration="60d"), CAT)
    from sim.placement import WorkTimer
    t = tightest_estimator(pools, WorkTimer(CAT.models))(job)
    sc2 = _sc([dict(pre, deadline=t / 2)], duration="60d")
    need2 = gpus_needed(sc2, CAT)["by_pool"]["dgx-h100"]
    assert need2["training_peak_gpus"] == pytest.approx(128, rel=1e-6)
    assert need2["jobs_widened_for_deadline"] == 1
    assert need2["gpu_hours"]["training"] == pytest.approx(64 * t / 3600, rel=1e-6)


def test_gpus_needed_per_kind_prefers_the_faster_gpu():
    cluster = {"pools": [{"name": "h", "system": "dgx-h100", "nodes": 16}, {"name": "b", "system": "dgx-b200", "nodes": 20}]}
    sc = _sc([{"family": "pretraining", "params": "8B", "tokens": "100B", "gpus": 64, "deadline": "3d"},
              {"family": "inference", "model": "llama3-70b", "tp": 4, "requests_per_s": 40, "pool": "h"}],
             cluster=cluster, duration="5d")
    need = gpus_needed(sc, CAT)
    assert set(need["by_kind"]) == {"h100", "b200"}
    assert need["by_kind"]["b200"]["gpus"] <= need["by_kind"]["h100"]["gpus"]
    assert need["by_kind"]["b200"]["inference_peak_gpus"] < need["by_kind"]["h100"]["inference_peak_gpus"]
    # unpinned work goes to the largest pool; the fleet stays on its own
    assert need["by_pool"]["h"]["training_peak_gpus"] == 0 and need["by_pool"]["b"]["training_peak_gpus"] == 64
    assert need["by_pool"]["b"]["inference_peak_gpus"] == 0
    for e in need["by_kind"].values():
        assert e["gpus"] % 8 == 0


# ------------------------------------------------ multiple of pretraining
def test_post_training_multiple_closed_form():
    sc = _sc([{"family": "pretraining", "name": "base", "params": "8B", "tokens": "160B", "gpus": 64},
              {"family": "post_training", "kind": "sft", "after_pretraining": "base", "count": 50, "tokens": "2B",
               "gpus": 8, "seq_len": 4096}], duration="90d")
    block = laws_block(sc, None, CAT, with_gpus_needed=False)
    model = sl.model_for_params(8e9, "base", 8192)
    pre = sl.training_flops_full(model, 160e9, 8192)
    post = 50 * pt.train_flops(model, 2e9, 4096)
    assert block["pretraining"]["flops"] == pytest.approx(pre)
    assert block["post_training"]["flops"] == pytest.approx(post)
    assert block["post_training_over_pretraining"]["flops"] == pytest.approx(post / pre)
    assert block["post_training_over_pretraining"]["by_base"]["base"]["pretraining_source"] == "scenario"


def test_catalog_base_uses_published_pretraining():
    sc = _sc([{"family": "post_training", "kind": "lora", "base_model": "llama3-70b", "count": 3, "gpus": 16}])
    block = laws_block(sc, None, CAT, with_gpus_needed=False)
    entry = block["post_training_over_pretraining"]["by_base"]["llama3-70b"]
    assert entry["pretraining_source"] == "published"
    assert entry["pretraining_flops"] == pytest.approx(sl.training_flops_full(CAT.models.get("llama3-70b"), 15e12, 8192))


# ------------------------------------------------------------ what-ifs
def _post(count):
    return {"family": "post_training", "mix": {"sft": 1, "lora": 2}, "base_model": "llama3-8b", "count": count,
            "tokens": "200M", "gpus": 8, "arrival": {"process": "poisson", "start": 0, "end": "2d"}}


def test_demand_is_linear_in_derivatives_through_the_engine():
    a = run(_data([_post(15)], duration="5d"))
    b = run(_data([_post(45)], duration="5d"))
    for r in (a, b):
        assert r.summary["jobs_completed"] == r.summary["jobs_submitted"]
        assert r.summary["laws"]["saturation"]["first_unserved_s"] is None   # nothing waited
    da = a.summary["laws"]["post_training"]["gpu_hours_demanded"]
    db = b.summary["laws"]["post_training"]["gpu_hours_demanded"]
    assert db == pytest.approx(3 * da, rel=1e-6)
    assert b.summary["laws"]["post_training"]["by_kind"]["lora"]["gpu_hours_demanded"] == pytest.approx(
        3 * a.summary["laws"]["post_training"]["by_kind"]["lora"]["gpu_hours_demanded"], rel=1e-6)


def _reasoning(thinking):
    return {"family": "inference", "model": "llama3-70b", "tp": 4, "requests_per_s": 100,
            "input_tokens": 500, "output_tokens": {"thinking": thinking, "answer": 200},
            "autoscaler": {"interval": "1h", "headroom": 1.0}}


def test_ten_times_reasoning_tokens_costs_more_than_ten_times():
    cluster = {"system": "dgx-h100", "nodes": 120}
    base = run(_data([_reasoning(800)], duration="2d", cluster=cluster))
    long = run(_data([_reasoning(9800)], duration="2d", cluster=cluster))   # answer + thinking: 1000 -> 10000
    h1 = base.summary["laws"]["test_time"]["gpu_hours_served"]
    h10 = long.summary["laws"]["test_time"]["gpu_hours_served"]
    assert long.summary["laws"]["saturation"]["first_unserved_s"] is None
    ratio = h10 / h1
    print(f"10x reasoning tokens -> {ratio:.2f}x inference GPU-hours")
    # 10x the KV cache per sequence (the batch a replica holds drops ~7x) and
    # attention over a 10x longer context make it more than linear: ~22x for
    # Llama 3 70B FP8 on 4 H100s under the default SLOs
    assert ratio >= 10.0
    from hardware import perf_serving as ps
    pool = build_pools(long.scenario, CAT)[0]
    cfg = ps.ServingConfig(model=CAT.models.get("llama3-70b"), gpu=pool.gpu, system=pool.system, fabric=pool.fabric,
                           tp=4, precision="fp8")
    need = [ps.replicas_needed(cfg, 100, 500, o, 2.0, 0.2) for o in (1000, 10000)]
    assert ratio == pytest.approx(need[1] / need[0], rel=0.05)
    # FLOPs grow less than 10x (the prompt's prefill is a fixed cost) while
    # GPU-hours grow more: decode is bound by memory traffic, not FLOPs
    f1 = base.summary["laws"]["test_time"]["flops"]
    f10 = long.summary["laws"]["test_time"]["flops"]
    m = CAT.models.get("llama3-70b")
    assert f10 / f1 == pytest.approx(request_flops(m, 500, 10000, 1) / request_flops(m, 500, 1000, 1), rel=1e-6)
    assert ratio > f10 / f1


# ------------------------------------------------------------ flagship
def test_flagship_example_loads_and_names_the_three_laws():
    sc = load_scenario(EXAMPLE)
    fams = [w.family for w in sc.workloads]
    assert {"pretraining", "post_training", "inference"} <= set(fams)
    systems = {p.system for p in sc.cluster.pools}
    assert systems == {"dgx-h100", "dgx-b200"}
    assert sc.duration == pytest.approx(YEAR_S)


def test_short_flagship_run_fills_the_laws_block():
    over = {"duration": "45d", "workloads.0.roadmap.start_compute": 3e23, "workloads.1.count": 12,
            "workloads.3.count": 20, "workloads.4.requests_per_s": 2}
    r = run(EXAMPLE, overrides=over)
    laws = r.summary["laws"]
    for law in LAWS:
        assert laws[law]["gpu_hours_demanded"] > 0
        fam = {"pretraining": "pretraining", "post_training": "post_training", "test_time": "inference"}[law]
        assert laws[law]["gpu_hours_demanded"] == pytest.approx(
            r.demand.loc[r.demand.family == fam, "gpu_hours_demanded"].sum())
    assert laws["pretraining"]["flops"] > 0 and laws["test_time"]["flops"] > 0
    assert laws["post_training_over_pretraining"]["flops"] > 0
    assert set(laws["gpus_needed"]["by_kind"]) == {"h100", "b200"}
    assert set(laws["gpus_needed"]["by_pool"]) == {"h100", "b200"}
    assert laws["gpus_needed"]["by_pool"]["b200"]["gpus"] >= 512           # the pretraining gang
    assert laws["saturation"]["capacity_gpus"] == 1280
    assert laws["test_time"]["compute_over_single_pass"] > 1
