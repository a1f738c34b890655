"""Failures, checkpoints, repairs and spares."""
import math

import numpy as np
import pytest

from engine_helpers import by_id, engine, job
from sim.failures import LLAMA3_CENSUS, causes, wall_time, work_done
from sim.scenario import FailuresSpec


def test_work_done_and_wall_time_closed_forms():
    # 600 s restart, then 3600 s of work + 60 s checkpoint per cycle
    assert work_done(500, 600, 3600, 60) == (0.0, 0.0, 0.0)
    assert work_done(600 + 3000, 600, 3600, 60) == (3000, 0.0, 0.0)
    done, saved, last = work_done(600 + 3660 * 2 + 100, 600, 3600, 60)
    assert (done, saved, last) == (7300, 7200, 600 + 7320)
    assert work_done(100, 0, math.inf, 0) == (100, 0.0, 0.0)
    assert wall_time(7200, 600, 3600, 60) == 600 + 7200 + 60        # no checkpoint after the last interval
    assert wall_time(7201, 0, 3600, 60) == 7201 + 120
    assert wall_time(500, 10, math.inf, 60) == 510
    # a run interrupted at any point has done what wall_time says it would
    for e in (100.0, 3700.0, 9000.0):
        d, _, _ = work_done(e, 0, 3600, 60)
        assert wall_time(d, 0, 3600, 60) <= e + 1e-9


def test_llama3_census_rate():
    spec = FailuresSpec(census="llama3")
    cs = causes(spec, 16384, 2048)
    per_54_days = sum(c.rate_per_s for c in cs) * 54 * 86400
    assert per_54_days == pytest.approx(419)               # the paper's unexpected interruptions
    assert sum(n for n, _ in LLAMA3_CENSUS.values()) == 419
    soft = {c.name for c in cs if c.repair_s == 0}
    assert {"software_bug", "nccl_watchdog_timeout", "dependency"} <= soft


def test_mtbf_rates_and_off_switch():
    cs = causes(FailuresSpec(gpu_mtbf_h=50000, node_mtbf_h=10000), 8000, 1000)
    assert sum(c.rate_per_s for c in cs) * 3600 == pytest.approx(8000 / 50000 + 1000 / 10000)
    assert causes(FailuresSpec(gpu_mtbf_h=0), 8000, 1000) == []
    assert causes(None, 8000, 1000) == []


def test_failure_count_is_poisson_in_the_rate():
    horizon = 200 * 86400.0
    eng = engine([job(0, 8, 0, 10)], nodes=16, horizon=horizon, debug=False,
                 failures=dict(gpu_mtbf_h=1000, repair_time=3600))
    expected = 16 * 8 / 1000 / 3600 * horizon              # 614
    assert abs(eng.counts["failures"] - expected) < 4 * math.sqrt(expected)


def test_repairs_take_nodes_out_and_bring_them_back():
    eng = engine([job(0, 8, 0, 10)], nodes=8, horizon=30 * 86400.0, debug=False,
                 failures=dict(node_mtbf_h=24 * 8, repair_time=6 * 3600))
    down = np.array([row[6] for row in eng.util_rows])
    assert down.max() > 0 and down.min() == 0
    # a node is down ~6 h per failure: mean GPUs down ~ failures x 6 h x 8 / 30 d
    expected = eng.counts["failures"] * 6 * 3600 * 8 / (30 * 86400.0)
    assert down.mean() == pytest.approx(expected, rel=0.35)


def test_software_causes_restart_jobs_without_taking_nodes_down():
    eng = engine([job("j", 64, 0, 20 * 86400.0)], nodes=8, horizon=25 * 86400.0, debug=True,
                 failures=dict(census="llama3", checkpoint_interval=3600, checkpoint_cost=60, restart_delay=600))
    r = by_id(eng)["j"]
    assert r.restarts == eng.counts["failures_hitting_jobs"] > 0
    assert r.lost_s > 0
    soft = sum(n for c, n in eng.failure_causes.items() if LLAMA3_CENSUS[c][1] == 0)
    assert eng.counts["repairs"] + soft >= eng.counts["failures"] - 2   # hardware causes get repaired
    # lost work per restart is at most one interval + checkpoint + restart, on 64 GPUs
    assert r.lost_s / r.restarts <= 64 * (3600 + 60 + 600) + 1e-6


def test_frequent_checkpoints_lose_less_per_failure():
    base = dict(gpu_mtbf_h=3000, repair_time=3600, restart_delay=600, checkpoint_cost=60)
    jobs = [job("j", 128, 0, 10 * 86400.0)]
    rare = by_id(engine(jobs, nodes=20, horizon=40 * 86400.0, debug=False, failures=dict(base, checkpoint_interval=3600)))
    sparse_ckpt = by_id(engine(jobs, nodes=20, horizon=40 * 86400.0, debug=False,
                               failures=dict(base, checkpoint_interval=6 * 3600)))
    assert rare["j"].restarts > 0 and sparse_ckpt["j"].restarts > 0
    per = lambda r: r.lost_s / r.restarts
    assert per(sparse_ckpt["j"]) > per(rare["j"])               # more work since the last checkpoint
    assert sparse_ckpt["j"].end_s > rare["j"].end_s
