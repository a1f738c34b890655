"""Scheduling policies: the order jobs get the cluster in."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_helpers import by_id, engine, job, random_jobs
from sim.scenario import SchedulerSpec, TenantSpec
from sim.scheduler import FairShareQueue, make_queue


class R:
    def __init__(self, seq, priority=0, est_s=0.0, tenant="a", gpus=1):
        self.seq, self.priority, self.est_s, self.tenant, self.gpus = seq, priority, est_s, tenant, gpus


def test_ordered_queues():
    runs = [R(0, priority=1, est_s=50), R(1, priority=3, est_s=10), R(2, priority=3, est_s=30), R(3, priority=0, est_s=5)]
    for policy, order in (("fifo", [0, 1, 2, 3]), ("priority", [1, 2, 0, 3]), ("sjf", [3, 1, 2, 0])):
        q = make_queue(SchedulerSpec(policy=policy), {})
        for r in reversed(runs):
            q.push(r)
        assert q.head() == order[0]
        assert list(q.candidates(10)) == order[1:]
        assert list(q.candidates(2)) == order[1:3]
        q.remove(runs[order[0]])
        assert q.head() == order[1] and len(q) == 3


def test_fair_share_picks_lowest_share_under_quota():
    alloc = {"a": 0, "b": 0}
    q = FairShareQueue({"a": TenantSpec(weight=1), "b": TenantSpec(weight=3, quota_gpus=16)}, alloc)
    for r in (R(0, tenant="a"), R(1, tenant="a"), R(2, tenant="b", gpus=8), R(3, tenant="b", gpus=8)):
        q.push(r)
    assert q.head() == 0                       # tie at zero share: earliest job
    alloc["a"] = 8                             # a: 8/1, b: 0/3
    assert q.head() == 2
    alloc["b"] = 12                            # b: 12/3 = 4 < 8, but 12 + 8 > quota 16
    assert q.head() == 0
    assert list(q.candidates(5)) == [1]        # b is over its quota: none of its jobs
    alloc["b"] = 8
    assert q.head() == 2 and list(q.candidates(5)) == [3, 0, 1]   # round robin, head tenant first


def test_priority_runs_high_priority_first():
    jobs = [job("blocker", 32, 0, 100), job("low", 32, 1, 100, priority=0), job("high", 32, 2, 100, priority=9)]
    runs = by_id(engine(jobs, nodes=4, policy="priority"))
    assert runs["high"].start_s == 100 and runs["low"].start_s == 200


def test_sjf_runs_shortest_first():
    jobs = [job("blocker", 32, 0, 100), job("long", 32, 1, 500), job("short", 32, 2, 50)]
    runs = by_id(engine(jobs, nodes=4, policy="sjf"))
    assert runs["short"].start_s == 100 and runs["long"].start_s == 150


def test_fair_share_shares_by_weight():
    """Two tenants flood a 4-node cluster with 8-GPU jobs; the one with
    weight 3 gets about three times the GPU-hours."""
    jobs = [job(f"a{i}", 8, 0, 100, tenant="a") for i in range(400)] + \
           [job(f"b{i}", 8, 0, 100, tenant="b") for i in range(400)]
    eng = engine(jobs, nodes=4, policy="fair-share", horizon=5000.0,
                 tenants={"a": TenantSpec(weight=1), "b": TenantSpec(weight=3)})
    gpu = {"a": 0.0, "b": 0.0}
    for r in eng.runs:
        gpu[r.tenant] += r.gpu_s
    assert gpu["b"] / gpu["a"] == pytest.approx(3.0, rel=0.05)


def test_fair_share_quota_caps_a_tenant():
    jobs = [job(f"a{i}", 8, 0, 100, tenant="a") for i in range(20)]
    eng = engine(jobs, nodes=4, policy="fair-share", tenants={"a": TenantSpec(quota_gpus=16)})
    assert max(row[2] for row in eng.util_rows) <= 16
    starts = sorted(r.start_s for r in eng.runs)
    assert starts[:2] == [0, 0] and starts[2] == 100


def test_backfill_flag_adds_backfill_to_any_order():
    jobs = [job("a", 8, 0, 100, priority=1), job("b", 16, 1, 50, priority=1), job("c", 4, 2, 60, priority=0)]
    assert by_id(engine(jobs, nodes=2, policy="priority"))["c"].start_s == 150
    runs = by_id(engine(jobs, nodes=2, policy="priority", backfill=True))
    assert runs["c"].start_s == 2 and runs["b"].start_s == 100


def test_backfill_window_bounds_the_scan():
    """When b ends at 50 the head still waits for a (100); the only job
    that could fill the hole sits beyond a window of 1. (A job arriving
    while the head is blocked is always checked: it is the only new one.)"""
    jobs = [job("a", 8, 0, 100), job("b", 8, 0, 50), job("head", 16, 1, 50), job("long", 8, 2, 1000),
            job("short", 4, 3, 10)]
    assert by_id(engine(jobs, nodes=2, policy="backfill", backfill_window=1))["short"].start_s == 150
    assert by_id(engine(jobs, nodes=2, policy="backfill", backfill_window=2))["short"].start_s == 50


def test_first_fit_placement_runs_and_spreads_more():
    rng = np.random.default_rng(4)
    jobs = random_jobs(200, rng, max_gpus=32, mean_gap=120, mean_dur=2000)
    topo = engine(jobs, nodes=96, policy="fifo")
    first = engine(jobs, nodes=96, policy="fifo", placement="first-fit")
    assert first.counts["completed"] == topo.counts["completed"] == 200
    spread = lambda e: sum(e.tier_starts[2:])
    assert spread(first) >= spread(topo)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 150)), max_size=400), window=st.integers(1, 12))
def test_fifo_queue_matches_a_sorted_list(ops, window):
    """The lazy FIFO queue (appends, out-of-order re-pushes, lazy removal,
    bulk drops of dead entries) always holds what a sorted list would."""
    from sim.scheduler import FifoQueue
    FifoQueue.COMPACT_AT = 3                  # exercise the bulk drop often
    try:
        q, ref, runs = FifoQueue(), [], {}
        for push, seq in ops:
            r = runs.setdefault(seq, R(seq))
            if push and seq not in ref:
                q.push(r)
                ref = sorted(ref + [seq])
            elif not push and seq in ref:
                q.remove(r)
                ref.remove(seq)
            assert len(q) == len(ref)
            assert q.head() == (ref[0] if ref else None)
            assert list(q.candidates(window)) == ref[1:1 + window]
            for s in ref[-3:]:                # "last" is never claimed wrongly
                assert q.is_last(runs[s]) <= (s == ref[-1])
    finally:
        FifoQueue.COMPACT_AT = 64
