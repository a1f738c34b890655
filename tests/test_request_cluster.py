"""Request-mode inference replicas hold GPUs of the simulated cluster: a
fixed-size fleet from the workload's start to the end of its traffic."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.api import run
from sim.cli import main

NODES, GPN = 2, 8                    # dgx-h100 x 2: 16 GPUs
HORIZON = 3600.0
OUT = {"sample_interval": "1m", "report": False, "parquet": False}


def requests_csv(tmp_path, every_s=50.0, n=30, name="req.csv"):
    """n requests, one every `every_s` seconds, 500 tokens in, 50 out."""
    p = tmp_path / name
    p.write_text("arrival_s,input_tokens,output_tokens\n" +
                 "".join(f"{k * every_s:g},500,50\n" for k in range(n)))
    return p.name


def request_workload(tmp_path, **over):
    w = {"family": "inference", "name": "chat", "model": "llama3-8b", "mode": "request", "replicas": 3, "tp": 2,
         "precision": "fp8", "trace": {"path": requests_csv(tmp_path), "format": "csv"},
         "slo": {"ttft": "2s", "tpot": "100ms"}}
    w.update(over)
    return w


def scenario(tmp_path, workloads, **over):
    s = {"name": "req-cluster", "seed": 5, "duration": "1h", "cluster": {"system": "dgx-h100", "nodes": NODES},
         "outputs": OUT, "workloads": workloads}
    s.update(over)
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(s))
    return p


def replicas_of(r):
    j = r.jobs
    return j[(j.family == "inference") & (j.kind == "serving")]


def peak_concurrent(jobs, horizon=HORIZON):
    """Most GPUs held at once, from the jobs' [start, end) intervals."""
    ev = []
    for row in jobs.itertuples():
        if np.isnan(row.start_s):
            continue
        end = row.end_s if not np.isnan(row.end_s) else horizon
        ev += [(row.start_s, row.gpus), (end, -row.gpus)]
    ev.sort(key=lambda e: (e[0], e[1]))       # releases before starts at the same instant
    return max(np.cumsum([g for _, g in ev])) if ev else 0


def test_request_replicas_occupy_the_cluster(tmp_path):
    start = 120.0
    r = run(scenario(tmp_path, [request_workload(tmp_path, start="2m")]))
    reps = replicas_of(r)
    end = start + r.requests.finish_s.max()              # the last request's finish, on the scenario's clock
    assert 1400 < end - start < 1500
    assert len(reps) == 3 and (reps.gpus == 2).all() and (reps.state == "completed").all()
    assert reps.start_s.tolist() == [start] * 3
    assert reps.end_s.to_numpy() == pytest.approx([end] * 3, abs=1e-9)
    s = r.summary
    busy_gpu_s = 3 * 2 * (end - start)
    assert s["utilization_allocated"] == pytest.approx(busy_gpu_s / (NODES * GPN * HORIZON), rel=1e-9)
    # energy: idle nodes all hour, plus busy power of the allocated GPUs (hardware.power)
    from hardware import power
    from sim.catalogs import load_catalogs
    hw = load_catalogs().hardware
    system = hw.system("dgx-h100")
    want = power.energy_kwh(system, hw.system_gpu(system), NODES, busy_gpu_s, HORIZON, pue=r.scenario.power.pue)
    idle = power.energy_kwh(system, hw.system_gpu(system), NODES, 0.0, HORIZON, pue=r.scenario.power.pue)
    assert s["energy_kwh"] == pytest.approx(want, rel=1e-9) and s["energy_kwh"] > idle
    # utilization.csv: 6 inference GPUs while the traffic lasts, none outside
    u = r.utilization
    inside = (u.time_s >= start) & (u.time_s < end)
    assert (u.loc[inside, "gpus_inference"] == 6).all() and (u.loc[~inside, "gpus_inference"] == 0).all()
    # demand.csv: serving rows, all of it served
    d = r.demand[(r.demand.family == "inference") & (r.demand.kind == "serving")]
    assert d.gpu_hours_demanded.sum() == pytest.approx(busy_gpu_s / 3600, rel=1e-9)
    assert d.gpu_hours_served.sum() == pytest.approx(busy_gpu_s / 3600, rel=1e-9)
    inf = s["inference"]
    assert inf["mode"] == "request" and inf["replicas"] == 3 and inf["replicas_peak"] == 3
    assert inf["replica_hours_unmet"] == 0 and inf["demand_served_fraction"] == 1.0
    assert inf["gpu_hours"] == pytest.approx(busy_gpu_s / 3600) and inf["requests_completed"] == 30
    assert "note" not in inf
    assert s["jobs_submitted"] == 0                       # replicas are not queued jobs


def test_without_drain_the_replicas_leave_at_the_window_end(tmp_path):
    w = request_workload(tmp_path, trace=None, requests_per_s=5, duration="40s", drain=False, start="1m")
    reps = replicas_of(run(scenario(tmp_path, [w])))
    assert len(reps) == 3 and reps.start_s.tolist() == [60.0] * 3
    assert reps.end_s.to_numpy() == pytest.approx([100.0] * 3)


def test_disaggregated_counts_prefill_and_decode_replicas(tmp_path):
    w = request_workload(tmp_path, replicas=1, disaggregated={"prefill_replicas": 1, "decode_replicas": 2})
    r = run(scenario(tmp_path, [w]))
    reps = replicas_of(r)
    assert len(reps) == 3 and (reps.gpus == 2).all()
    assert r.utilization.gpus_inference.max() == 6
    assert r.summary["inference"]["replicas"] == 3 and r.summary["inference"]["replicas_peak"] == 3


def test_training_shares_the_pool_with_the_replicas(tmp_path):
    (tmp_path / "jobs.csv").write_text("submit_s,duration_s,gpus\n10,1000,8\n20,600,16\n")
    train = {"family": "trace", "name": "train", "path": "jobs.csv"}
    both = run(scenario(tmp_path, [request_workload(tmp_path, replicas=2, tp=4), train]))
    alone = run(scenario(tmp_path, [train]))
    end = both.requests.finish_s.max()
    tj = both.jobs[both.jobs.family == "trace"].set_index("job_id")
    big = [j for j in tj.index if tj.loc[j, "gpus"] == 16][0]
    small = [j for j in tj.index if tj.loc[j, "gpus"] == 8][0]
    assert tj.loc[small, "start_s"] == 10.0                 # the 8 GPUs the replicas leave
    assert tj.loc[big, "start_s"] == pytest.approx(end)     # the whole pool only once the traffic is over
    assert alone.jobs.set_index("job_id").loc[big, "start_s"] == 1010.0
    assert peak_concurrent(both.jobs) == NODES * GPN
    assert (both.utilization.gpus_allocated <= both.utilization.gpus_total).all()


def test_replicas_wait_for_gpus_and_report_what_they_missed(tmp_path):
    (tmp_path / "jobs.csv").write_text("submit_s,duration_s,gpus\n0,600,16\n")
    train = {"family": "trace", "name": "train", "path": "jobs.csv"}
    r = run(scenario(tmp_path, [request_workload(tmp_path, start="1m"), train]))
    reps = replicas_of(r)
    assert len(reps) == 3 and (reps.start_s >= 600).all() and (reps.start_s <= 660).all()
    inf = r.summary["inference"]
    wait = reps.start_s.to_numpy() - 60.0
    assert inf["replica_hours_unmet"] == pytest.approx(wait.sum() / 3600, rel=1e-9)
    assert inf["demand_served_fraction"] < 1 and "latencies assume all" in inf["note"]
    # with preemption, the higher-priority replicas take their GPUs at once
    pre = run(scenario(tmp_path, [request_workload(tmp_path, start="1m", priority=10), train],
                       scheduler={"policy": "priority", "preemption": True}))
    reps = replicas_of(pre)
    assert reps.start_s.tolist() == [60.0] * 3 and pre.summary["inference"]["replica_hours_unmet"] == 0
    assert pre.jobs[pre.jobs.family == "trace"].preemptions.sum() >= 1


def test_two_request_workloads_add_up_in_demand_and_utilization(tmp_path):
    a = request_workload(tmp_path)                                          # 3 x 2 GPUs from 0
    b = request_workload(tmp_path, name="batch", replicas=2, tp=1, start="10m",
                         trace={"path": requests_csv(tmp_path, every_s=20, n=20, name="b.csv"), "format": "csv"})
    r = run(scenario(tmp_path, [a, b]))
    reps = replicas_of(r)
    ends = {w: g.end_s.iloc[0] for w, g in reps.groupby("workload")}
    want = 6 * ends["chat"] + 2 * (ends["batch"] - 600.0)                   # GPU-seconds asked for
    d = r.demand[(r.demand.family == "inference")]
    assert d.gpu_hours_demanded.sum() == pytest.approx(want / 3600, rel=1e-9)
    assert d.gpu_hours_served.sum() == pytest.approx(want / 3600, rel=1e-9)
    u = r.utilization.set_index("time_s").gpus_inference
    assert u.loc[0.0] == 6 and u.loc[600.0] == 8 and u.loc[60.0 * math.ceil(ends["chat"] / 60)] == 0
    inf = r.summary["inference"]
    assert inf["replicas"] == 5 and inf["replicas_peak"] == 5 and inf["requests_completed"] == 50
    assert set(inf["workloads"]) == {"chat", "batch"} and inf["workloads"]["batch"]["replicas_peak"] == 2


def test_fleet_and_request_workloads_share_one_summary(tmp_path):
    fleet = {"family": "inference", "name": "fleet", "model": "llama3-8b", "requests_per_s": 20, "tp": 1,
             "precision": "fp8", "input_tokens": 1000, "output_tokens": 300, "slo": {"ttft": "2s", "tpot": "100ms"},
             "autoscaler": {"interval": "15m", "scale_up_delay": "5m", "min_replicas": 1, "max_replicas": 2}}
    r = run(scenario(tmp_path, [fleet, request_workload(tmp_path)]))
    inf = r.summary["inference"]
    reps = replicas_of(r)
    assert set(reps.workload) == {"fleet", "chat"} and (reps.workload == "chat").sum() == 3
    assert inf["mode"] == "mixed" and inf["replicas_started"] == len(reps)
    assert inf["request_mode"]["requests_completed"] == inf["requests_completed"] == 30
    assert inf["slo_attainment"] == min(inf["slo_attainment_fleet"], inf["slo_attainment_requests"])
    assert inf["slo_attainment_fleet"] < 1              # the fleet's scale-up delay goes unserved
    assert inf["gpu_hours"] == pytest.approx(reps.gpu_hours.sum())
    d = r.demand[r.demand.family == "inference"]
    assert inf["demand_served_fraction"] == pytest.approx(d.gpu_hours_served.sum() / d.gpu_hours_demanded.sum())
    json.dumps(r.summary)


@pytest.mark.parametrize("over, where", [
    ({"replicas": 5, "tp": 4}, "workloads[0].replicas"),            # 20 GPUs > 16
    ({"replicas": 5, "tp": 3}, "workloads[0].replicas"),            # 15 GPUs, but 2 per 8-GPU node: 4 fit
    ({"disaggregated": {"prefill_replicas": 3, "decode_replicas": 2}, "tp": 4}, "workloads[0].disaggregated"),
])
def test_too_many_replicas_for_the_pool_is_exit_2(tmp_path, capsys, over, where):
    p = scenario(tmp_path, [request_workload(tmp_path, **over)])
    assert main(["run", str(p), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and where in err[0] and "replicas" in err[0]
    assert not (tmp_path / "out").exists()


def test_same_seed_same_jobs_csv(tmp_path, capsys):
    (tmp_path / "jobs.csv").write_text("submit_s,duration_s,gpus\n10,1000,8\n20,600,16\n")
    w = request_workload(tmp_path, trace=None, requests_per_s=2, duration="10m", input_tokens=800,
                         output_tokens={"mean": 200, "distribution": "lognormal"})
    p = scenario(tmp_path, [w, {"family": "trace", "path": "jobs.csv"}])
    texts = []
    for k in range(2):
        assert main(["run", str(p), "-o", str(tmp_path / f"o{k}"), "--quiet"]) == 0
        texts.append((tmp_path / f"o{k}" / "jobs.csv").read_text())
    assert texts[0] == texts[1]
    jobs = pd.read_csv(tmp_path / "o0" / "jobs.csv")
    assert (jobs.kind == "serving").sum() == 3


def test_test_time_flops_of_request_mode_count_samples_and_verifier(tmp_path):
    """The laws block's test-time FLOPs add up the completed requests' work:
    4 samples and one verifier pass cost what workloads.reasoning says, and
    compute_over_single_pass is that over one answer per request."""
    from workloads.models import load_models
    from workloads.reasoning import TestTimeCompute, request_flops, request_work

    m = load_models().get("llama3-8b")
    plain = run(scenario(tmp_path, [request_workload(tmp_path)])).summary["laws"]["test_time"]
    one = request_flops(m, request_work(500, 50))
    assert plain["requests"] == 30
    assert plain["flops"] == pytest.approx(30 * one, rel=1e-9)
    assert plain["compute_over_single_pass"] == pytest.approx(1.0)
    tt = run(scenario(tmp_path, [request_workload(tmp_path, samples_per_request=4, verifier_passes=1)])
             ).summary["laws"]["test_time"]
    many = request_flops(m, request_work(500, 50, TestTimeCompute(samples=4, verifier_passes=1)))
    assert tt["requests"] == 30
    assert tt["flops"] == pytest.approx(30 * many, rel=1e-9)
    assert tt["compute_over_single_pass"] == pytest.approx(many / one, rel=1e-9) and many / one > 4
