"""Fleet-mode inference: demand in time slices, autoscaled replicas that
share the cluster with training."""
import pytest

from sim.api import run
from workloads.errors import InputError


def scenario(**over):
    s = {
        "name": "fleet", "seed": 3, "duration": "2d",
        "cluster": {"system": "dgx-h100", "nodes": 8},
        "outputs": {"sample_interval": "15m", "report": False, "parquet": False},
        "workloads": [{
            "family": "inference", "name": "chat", "model": "llama3-8b", "requests_per_s": 200, "diurnal": 0.8,
            "tp": 1, "precision": "fp8", "input_tokens": 1000, "output_tokens": 300, "priority": 10,
            "slo": {"ttft": "2s", "tpot": "100ms"},
            "autoscaler": {"interval": "15m", "scale_up_delay": "5m", "min_replicas": 1},
        }],
    }
    for k, v in over.items():
        s[k] = v
    return s


def test_replicas_follow_the_daily_cycle():
    r = run(scenario())
    jobs = r.jobs
    reps = jobs[(jobs.family == "inference") & (jobs.kind == "serving")]
    assert len(reps) > 4 and (reps.gpus == 1).all()
    u = r.utilization
    hour = (u.time_s % 86400) / 3600
    peak = u.loc[(hour > 12) & (hour < 16), "gpus_inference"].mean()
    trough = u.loc[(hour > 0) & (hour < 4), "gpus_inference"].mean()
    assert peak > 3 * trough > 0                  # 1 + 0.8 vs 1 - 0.8 around 14:00 / 02:00
    d = r.demand[r.demand.family == "inference"]
    assert (d.gpu_hours_served <= d.gpu_hours_demanded + 1e-9).all()
    inf = r.summary["inference"]
    assert 0.9 < inf["demand_served_fraction"] <= 1.0     # only the scale-up delays go unserved
    assert inf["replicas_peak"] == u["gpus_inference"].max()
    # every replica row is a lifetime within the run
    assert ((reps.start_s <= reps.end_s) | reps.end_s.isna()).all()


def test_autoscaler_bounds():
    s = scenario()
    s["workloads"][0]["autoscaler"].update(min_replicas=3, max_replicas=5)
    u = run(s).utilization
    assert u["gpus_inference"].max() == 5
    assert u.loc[u.time_s > 3600, "gpus_inference"].min() == 3


def test_inference_preempts_lower_priority_training_when_allowed():
    train = {"family": "pretraining", "name": "pt", "model": "llama3-8b", "tokens": "2T", "gpus": 64, "priority": 0}
    on = run(scenario(scheduler={"policy": "priority", "preemption": True},
                      workloads=scenario()["workloads"] + [train]))
    off = run(scenario(scheduler={"policy": "priority", "preemption": False},
                       workloads=scenario()["workloads"] + [train]))
    pt_on = on.jobs[on.jobs.family == "pretraining"].iloc[0]
    pt_off = off.jobs[off.jobs.family == "pretraining"].iloc[0]
    assert pt_on.preemptions > 0 and pt_off.preemptions == 0
    assert on.summary["inference"]["demand_served_fraction"] > off.summary["inference"]["demand_served_fraction"]
    assert on.summary["lost_gpu_hours"] == 0              # preemption checkpoints; failures are off


def test_impossible_slo_is_an_input_error_before_the_run():
    s = scenario()
    s["workloads"][0]["slo"] = {"ttft": "1ms", "tpot": "1ms"}
    with pytest.raises(InputError) as e:
        run(s)
    assert "workloads[0]" in e.value.where
