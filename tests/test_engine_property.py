"""Property-based: random small scenarios keep the engine's invariants, and
the same scenario and seed give byte-identical tables."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_helpers import engine, job
from sim.engine import COMPLETED, QUEUED, RUNNING
from test_engine import check_books

job_st = st.tuples(st.sampled_from([1, 2, 3, 4, 8, 12, 16, 24]),      # GPUs
                   st.floats(0, 20000),                                # submit
                   st.floats(0, 30000),                                # duration
                   st.integers(0, 3),                                  # priority
                   st.sampled_from(["a", "b"]),                        # tenant
                   st.booleans())                                      # checkpointable


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=st.lists(job_st, min_size=1, max_size=25),
       nodes=st.integers(3, 6),
       policy=st.sampled_from(["fifo", "priority", "backfill", "fair-share", "sjf"]),
       preemption=st.booleans(),
       failures=st.booleans(),
       spares=st.integers(0, 1),
       horizon=st.sampled_from([30000.0, 200000.0]),
       window=st.sampled_from([1, 2, 100]))
def test_random_scenarios_keep_invariants(jobs, nodes, policy, preemption, failures, spares, horizon, window):
    js = [job(i, g, s, d, priority=p, tenant=t, checkpointable=c) for i, (g, s, d, p, t, c) in enumerate(jobs)]
    fail = dict(gpu_mtbf_h=40.0, node_mtbf_h=100.0, repair_time=5000.0, checkpoint_interval=3000.0) if failures else None
    eng = engine(js, nodes=nodes, policy=policy, preemption=preemption, failures=fail, spares=spares,
                 horizon=horizon, backfill_window=window)             # debug: books (and the backfill
                                                                      # window cache) checked every pass
    check_books(eng)
    lost = sum(r.lost_s for r in eng.runs)
    if not failures and all(c for *_, c in jobs):
        assert lost == 0                                              # lost work only with failures
    if not failures and not preemption:
        for r in eng.runs:
            if r.state == COMPLETED:                                  # fixed durations are kept
                assert abs((r.end_s - r.start_s) - r.job.duration_s) < 1e-6
                assert abs(r.gpu_s - r.alloc * r.job.duration_s) < 1e-6 * max(1.0, r.gpu_s)
                assert r.alloc == (r.gpus if r.gpus < 8 else -(-r.gpus // 8) * 8)   # whole nodes above one
    for r in eng.runs:
        if r.state in (RUNNING, QUEUED, COMPLETED):
            assert r.submit_s <= horizon
    samples = np.array([row[2] for row in eng.util_rows])
    assert (samples <= nodes * 8).all()


def scenario(seed):
    return {
        "name": "det", "seed": seed, "duration": "3d",
        "cluster": {"system": "dgx-h100", "nodes": 10, "spare_nodes": 1},
        "scheduler": {"policy": "backfill", "preemption": True},
        "failures": {"gpu_mtbf_h": 2000, "node_mtbf_h": 5000, "repair_time": "6h"},
        "outputs": {"sample_interval": "1h"},
        "workloads": [
            {"family": "post_training", "name": "ft", "base_model": "llama3-8b", "mix": {"sft": 1, "lora": 1},
             "count": 12, "tokens": "300M", "gpus": 8, "arrival": {"process": "poisson", "end": "2d"}},
            {"family": "inference", "name": "chat", "model": "llama3-8b", "requests_per_s": 60, "diurnal": 0.5,
             "tp": 1, "priority": 5, "autoscaler": {"interval": "30m"}},
        ],
    }


def test_same_seed_gives_byte_identical_csvs(tmp_path):
    from sim.api import run

    paths = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        run(scenario(4)).save(out, parquet=False, report=False)
        paths.append(out)
    for name in ("jobs.csv", "utilization.csv", "demand.csv"):
        assert (paths[0] / name).read_bytes() == (paths[1] / name).read_bytes(), name
    other = tmp_path / "other"
    run(scenario(5)).save(other, parquet=False, report=False)
    assert (other / "jobs.csv").read_bytes() != (paths[0] / "jobs.csv").read_bytes()
