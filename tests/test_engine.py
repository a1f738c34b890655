"""The cluster engine: invariants, queueing against closed forms, EASY
backfill, preemption and failure accounting, determinism."""
import math

import numpy as np
import pytest

from engine_helpers import by_id, engine, job, pool, random_jobs
from sim.engine import CANCELLED, COMPLETED, QUEUED, RUNNING, Engine
from sim.scenario import SchedulerSpec
from workloads.errors import InputError


def check_books(eng: Engine):
    """Every job accounted for, times ordered, GPU-hours within capacity."""
    horizon = eng.horizon
    cap = sum(p.state.n * p.state.gpn for p in eng.pools) * horizon
    total = 0.0
    for r in eng.runs:
        assert r.state in (COMPLETED, RUNNING, QUEUED, CANCELLED, 0, 1)
        if r.state in (COMPLETED, RUNNING):
            assert r.submit_s <= r.start_s <= horizon
            assert r.job.submit_s <= r.submit_s
        if r.state == COMPLETED:
            assert r.start_s <= r.end_s <= horizon
        if r.state == QUEUED:
            assert r.start_s is None or r.restarts + r.preemptions > 0
        assert r.gpu_s >= 0 and r.lost_s >= 0
        assert r.lost_s <= r.gpu_s + 1e-6
        total += r.gpu_s
    assert total <= cap * (1 + 1e-9)
    assert math.isclose(total, sum(eng.pool_gpu_s), rel_tol=1e-9, abs_tol=1e-6)
    n = eng.counts
    assert n["submitted"] == sum(1 for r in eng.runs[:eng.n_jobs] if r.state >= 2)
    assert n["completed"] == sum(1 for r in eng.runs[:eng.n_jobs] if r.state == COMPLETED)


@pytest.mark.parametrize("policy", ["fifo", "priority", "backfill", "fair-share", "sjf"])
def test_invariants_every_policy(policy):
    rng = np.random.default_rng(5)
    jobs = random_jobs(300, rng, mean_gap=200, mean_dur=4000, priorities=(0, 1, 2), tenants=("a", "b", "c"))
    eng = engine(jobs, nodes=4, policy=policy, horizon=40 * 86400.0)   # debug: books checked every pass
    check_books(eng)
    assert eng.counts["completed"] == 300
    # the cluster never holds more than it has
    assert max(row[2] for row in eng.util_rows) <= 32


def test_fifo_is_strict_order():
    jobs = [job(0, 32, 0, 100), job(1, 16, 1, 100), job(2, 1, 2, 10)]
    runs = by_id(engine(jobs, nodes=4, policy="fifo"))
    assert runs["1"].start_s == 100 and runs["2"].start_s == 100   # the 1-GPU job waits behind the head


def test_easy_backfill_example():
    """J1 holds one of two nodes until 100; J2 needs both (reserved at 100).
    A short job fits in the hole; a long one would delay J2 and waits."""
    jobs = [job(1, 8, 0, 100), job(2, 16, 1, 50), job(3, 8, 2, 500), job(4, 4, 3, 60)]
    runs = by_id(engine(jobs, nodes=2, policy="backfill"))
    assert runs["2"].start_s == 100          # the head starts at its reservation
    assert runs["4"].start_s == 3            # ends at 63 <= 100: backfilled
    assert runs["3"].start_s == 150          # would run past 100 on a node J2 needs: waits
    runs = by_id(engine(jobs, nodes=2, policy="fifo"))
    assert runs["4"].start_s == 150


def test_backfill_uses_nodes_the_head_does_not_need():
    """Head needs 2 of 3 nodes at 100; one node stays spare then, so a long
    job may take it now."""
    jobs = [job(1, 16, 0, 100), job(2, 16, 1, 50), job(3, 8, 2, 1000)]
    runs = by_id(engine(jobs, nodes=3, policy="backfill"))
    assert runs["3"].start_s == 2
    assert runs["2"].start_s == 100


def test_backfill_never_delays_the_head():
    rng = np.random.default_rng(11)
    jobs = random_jobs(400, rng, max_gpus=32, mean_gap=150, mean_dur=3000)
    eng = engine(jobs, nodes=4, policy="backfill", horizon=60 * 86400.0)
    check_books(eng)
    assert eng.counts["backfilled"] > 20 and eng.shadows
    for i, shadow in eng.shadows.items():
        r = eng.runs[i]
        assert r.start_s is not None and r.start_s <= shadow + 1e-6, (i, r.start_s, shadow)
    # and backfill shortens the mean wait against strict FIFO
    fifo = engine(jobs, nodes=4, policy="fifo", horizon=60 * 86400.0)
    wait = lambda e: np.mean([r.start_s - r.submit_s for r in e.runs if r.start_s is not None])
    assert wait(eng) < wait(fifo)


def erlang_c(lam, mu, c):
    """(probability of waiting, mean wait in queue) of M/M/c (Erlang C)."""
    a = lam / mu
    rho = a / c
    s = sum(a ** k / math.factorial(k) for k in range(c))
    top = a ** c / math.factorial(c) / (1 - rho)
    pw = top / (s + top)
    return pw, pw / (c * mu - lam)


def test_mmc_queue_against_erlang_c():
    """1-GPU jobs with Poisson arrivals and exponential durations on 16 GPUs
    under FIFO are an M/M/16 queue: the engine's waits equal the textbook
    multi-server recursion exactly, and match Erlang C's closed forms."""
    import heapq

    c, mu, lam = 16, 1 / 3600.0, 12 / 3600.0              # rho = 0.75
    rng = np.random.default_rng(0)
    n = 60000
    t = np.cumsum(rng.exponential(1 / lam, n))
    d = rng.exponential(1 / mu, n)
    eng = engine([job(i, 1, t[i], d[i]) for i in range(n)], nodes=2, policy="fifo", horizon=t[-1] + 1e6, debug=False)
    waits = np.array([r.start_s - r.submit_s for r in eng.runs])
    free, ref = [0.0] * c, []
    for i in range(n):                                     # FIFO c-server recursion
        s = max(heapq.heappop(free), t[i])
        ref.append(s - t[i])
        heapq.heappush(free, s + d[i])
    assert np.allclose(waits, ref, atol=1e-6)
    pw, wq = erlang_c(lam, mu, c)
    w = waits[2000:]                                        # past the warm-up
    assert abs((w > 1e-9).mean() - pw) / pw < 0.08, ((w > 1e-9).mean(), pw)
    assert abs(w.mean() - wq) / wq < 0.2, (w.mean(), wq)


def test_preemption_checkpoints_and_resumes_without_lost_work():
    jobs = [job("low", 32, 0, 10000, priority=0), job("high", 16, 1000, 500, priority=5)]
    eng = engine(jobs, nodes=4, policy="priority", preemption=True)
    runs = by_id(eng)
    low, high = runs["low"], runs["high"]
    assert high.start_s == 1000 and high.end_s == 1500
    assert low.preemptions == 1 and low.restarts == 0 and low.lost_s == 0
    over = 120.0 + 600.0                                 # checkpoint_cost + restart_delay (defaults)
    assert low.end_s == pytest.approx(1500 + over + 9000)
    assert low.gpu_s == pytest.approx(32 * (10000 + over))
    check_books(eng)


def test_preemption_of_non_checkpointable_work_loses_it():
    jobs = [job("low", 32, 0, 10000, priority=0, checkpointable=False), job("high", 32, 1000, 500, priority=5)]
    runs = by_id(engine(jobs, nodes=4, policy="priority", preemption=True))
    low = runs["low"]
    assert low.lost_s == pytest.approx(32 * 1000)
    assert low.end_s == pytest.approx(1500 + 600 + 10000)


def test_no_preemption_without_the_flag_or_a_lower_priority():
    jobs = [job("low", 32, 0, 10000, priority=0), job("high", 16, 1000, 500, priority=5)]
    assert by_id(engine(jobs, nodes=4, policy="priority"))["high"].start_s == 10000
    jobs = [job("a", 32, 0, 10000, priority=5), job("b", 16, 1000, 500, priority=5)]
    assert by_id(engine(jobs, nodes=4, policy="priority", preemption=True))["b"].start_s == 10000


def run_with_failure(jobs, at, nodes=2, node=0, repair_s=3600.0, spares=0, **failures):
    from sim.failures import Cause
    spec = dict(gpu_mtbf_h=1e12, checkpoint_interval=3600.0, checkpoint_cost=60.0, restart_delay=300.0)
    spec.update(failures)
    from engine_helpers import pool as mkpool
    from sim.scenario import FailuresSpec
    eng = Engine([mkpool(nodes, spares=spares)], jobs, scheduler=SchedulerSpec(), failures=FailuresSpec(**spec),
                 horizon_s=1e7, seed=0, debug=True)
    eng.fail_rate = 0.0                        # only the injected failure
    cause = Cause("test", 0.0, repair_s)
    eng._at(at, lambda ev: eng._fail_node(0, node, cause, eng.env.now))
    return eng.run()


def test_failure_loses_work_since_last_checkpoint():
    jobs = [job("j", 16, 0, 10000)]
    eng = run_with_failure(jobs, at=5000.0, nodes=2, repair_s=100.0)
    r = by_id(eng)["j"]
    # one 3600 s interval + 60 s checkpoint done by 3660; 1340 s lost on 16 GPUs
    assert r.restarts == 1
    assert r.lost_s == pytest.approx(16 * 1340.0)
    # the node is back at 5100; restart 300 s, then 6400 s of work with one checkpoint
    assert r.start_s == 0
    assert r.end_s == pytest.approx(5100 + 300 + 6400 + 60)
    check_books(eng)


def test_spare_node_replaces_a_failed_one_at_once():
    jobs = [job("j", 16, 0, 10000)]
    eng = run_with_failure(jobs, at=5000.0, nodes=2, spares=1, repair_s=1e8)
    r = by_id(eng)["j"]
    assert r.end_s == pytest.approx(5000 + 300 + 6400 + 60)
    st = eng.pools[0].state
    assert st.down_nodes == 1 and st.up_nodes == 2 and not st.spares.items


def test_no_failures_means_no_lost_work():
    rng = np.random.default_rng(3)
    jobs = random_jobs(200, rng, mean_gap=300)
    eng = engine(jobs, nodes=4, policy="backfill", horizon=30 * 86400.0)
    assert eng.counts["failures"] == 0
    assert sum(r.lost_s for r in eng.runs) == 0 and sum(r.restarts for r in eng.runs) == 0
    eng = engine(jobs, nodes=4, policy="backfill", horizon=30 * 86400.0,
                 failures=dict(gpu_mtbf_h=200.0, node_mtbf_h=500.0, repair_time=3600.0))
    assert eng.counts["failures"] > 10
    assert sum(r.lost_s for r in eng.runs) > 0
    check_books(eng)


def test_gpu_mtbf_zero_is_no_failures():
    from sim.scenario import FailuresSpec
    assert not FailuresSpec(gpu_mtbf_h=0).enabled
    rng = np.random.default_rng(3)
    eng = engine(random_jobs(50, rng), nodes=2, failures=dict(gpu_mtbf_h=0), horizon=10 * 86400.0)
    assert eng.counts["failures"] == 0 and eng.fail_rate == 0


def test_cancel_before_start():
    jobs = [job(0, 32, 0, 1000), job(1, 8, 10, 100, cancel_s=500.0), job(2, 8, 20, 100, cancel_s=5000.0)]
    runs = by_id(engine(jobs, nodes=4))
    assert runs["1"].state == CANCELLED and runs["1"].end_s == 500
    assert runs["2"].state == COMPLETED and runs["2"].start_s == 1000


def test_dependencies_wait_for_their_job():
    jobs = [job("base", 16, 0, 1000), job("child", 8, 10, 100, after=("base",))]
    runs = by_id(engine(jobs, nodes=4))
    assert runs["child"].submit_s == 1000 and runs["child"].start_s == 1000
    with pytest.raises(InputError, match="unknown job"):
        engine([job("c", 8, 0, 1, after=("nope",))], nodes=1)


def test_job_that_never_fits_is_an_input_error():
    with pytest.raises(InputError) as e:
        Engine([pool(2)], [job("big", 24, 0, 10)], horizon_s=100.0)
    assert "asks for 24 GPUs" in e.value.what and "16" in e.value.what


def test_jobs_running_and_queued_at_the_horizon():
    jobs = [job(0, 32, 0, 1000), job(1, 32, 10, 1000)]
    eng = engine(jobs, nodes=4, horizon=500.0)
    runs = by_id(eng)
    assert runs["0"].state == RUNNING and runs["0"].gpu_s == pytest.approx(32 * 500)
    assert runs["1"].state == QUEUED


def test_topology_packing_and_slower_spread_jobs():
    """Multi-node gangs pack into one leaf group when one has room; a job
    whose duration depends on its placement runs slower across tiers."""
    seen = []

    def duration(place):
        seen.append(place.tiers_spanned)
        return 100.0 * (1 + place.tiers_spanned)

    from workloads.jobs import Job
    jobs = [Job(job_id="a", family="trace", kind="t", gpus=8 * 30, submit_s=0, duration_fn=duration),
            Job(job_id="b", family="trace", kind="t", gpus=8 * 20, submit_s=1, duration_fn=duration),
            Job(job_id="c", family="trace", kind="t", gpus=8 * 40, submit_s=2, duration_fn=duration),
            Job(job_id="d", family="trace", kind="t", gpus=4, submit_s=3, duration_fn=duration)]
    eng = engine(jobs, nodes=128)                # four leaf groups of 32 nodes
    runs = by_id(eng)
    assert runs["a"].tiers == 1                  # 30 nodes in one leaf
    assert runs["b"].tiers == 1                  # 20 nodes: the next leaf, not the 2 left in a's
    assert runs["c"].tiers == 2                  # 40 nodes cannot fit one leaf: across the spine
    assert runs["d"].tiers == 0
    assert [runs[k].end_s - runs[k].start_s for k in "abcd"] == [200, 200, 300, 100]


def recording_jobs(sizes, submits, durations):
    """Jobs whose duration_fn records each placement they are timed on."""
    from workloads.jobs import Job
    seen = {}

    def timed(i, d):
        def duration(place):
            seen.setdefault(i, []).append((place.nodes, place.tiers_spanned))
            return d
        return duration

    jobs = [Job(job_id=str(i), family="trace", kind="t", gpus=int(g), submit_s=float(s), duration_fn=timed(i, float(d)))
            for i, (g, s, d) in enumerate(zip(sizes, submits, durations))]
    return jobs, seen


def test_nvl72_gangs_pack_into_nvlink_domains():
    """GB200 NVL72 as hardware/topology.py lays it out: 18 trays of 4 GPUs
    per NVLink domain, a whole 8-rack SU behind one leaf group. A gang of
    up to 72 GPUs lands inside one domain (no network tier), best fit
    first, so a half-used domain is filled before a fresh one is opened; a
    larger gang stays inside one SU (one leaf tier)."""
    sizes = [36, 40, 36, 72, 8, 4, 144, 64]
    jobs, seen = recording_jobs(sizes, range(len(sizes)), [1e5] * len(sizes))
    eng = engine(jobs, pools=[pool(288, system="gb200-nvl72")])
    st = eng.pools[0].state
    assert [(lv.name, lv.nodes, lv.tier) for lv in st.levels] == [("nvlink_domain", 18, 0), ("leaf_group", 144, 1),
                                                                  ("pool", 288, 2)]
    domains = lambda i: {st.gof[0][n] for n in seen[i][-1][0]}
    for i, g in enumerate(sizes):
        if g <= 72:
            assert len(domains(i)) == 1 and seen[i][-1][1] == 0, (g, seen[i])
    assert domains(0) == domains(2)              # 9 + 9 trays: one domain, full
    assert domains(4) == domains(1)              # 2 trays into the 8 the 40-GPU job left free
    assert domains(5) == domains(1)              # a single tray into the fullest domain with room
    assert len(domains(6)) == 2 and seen[6][-1][1] == 1
    assert eng.tier_starts[0] == 7 and eng.tier_starts[1] == 1


@pytest.mark.parametrize("system,nodes", [("dgx-h100", 600), ("gb200-nvl72", 612)])
def test_placement_tiers_are_the_topology_span(system, nodes):
    """Every placement's tiers_spanned (what a job's duration depends on)
    is the tier hardware.topology.span gives its nodes: the engine packs
    jobs on the topology's own groups."""
    from hardware.catalog import load_catalog
    from hardware.topology import PoolSpec, build_topology, span

    topo = build_topology([PoolSpec(system=system, nodes=nodes)], load_catalog())
    rng = np.random.default_rng(7)
    n = 150
    gpn = topo.pools[0].system.gpus_per_node
    sizes = rng.choice([1, 2, gpn, 2 * gpn, 72, 16 * gpn, 40 * gpn, 100 * gpn, 300 * gpn], size=n)
    jobs, seen = recording_jobs(sizes, np.cumsum(rng.exponential(300.0, n)), rng.exponential(20000.0, n) + 1)
    eng = engine(jobs, pools=[pool(nodes, system=system)], policy="backfill", horizon=30 * 86400.0)
    assert eng.counts["completed"] == n
    tier = {"gpu": 0, "nvlink": 0, "leaf": 1, "spine": 2, "core": 3}
    placed = [p for runs in seen.values() for p in runs]
    assert {t for _, t in placed} >= {0, 1, 2 if system == "dgx-h100" else 3}
    for nodes_, tiers in placed:
        assert tiers == tier[span(topo, nodes=list(nodes_)).tier], (nodes_, tiers)


@pytest.mark.parametrize("seed,nodes,window", [(21, 40, 100), (22, 64, 3), (23, 64, 12), (24, 24, 1)])
def test_skipped_backfill_passes_change_nothing(seed, nodes, window):
    """A backfill pass is skipped when it could not start anything (same
    reservation, nothing larger fits than at the last full pass, no job
    moved into the window unchecked, no partly free node for a job turned
    down for want of one): forcing every pass to run gives the same
    schedule. Short windows make jobs move in from beyond them; gangs make
    small jobs wait for partly free nodes."""
    rng = np.random.default_rng(seed)
    n = 1500
    sizes = rng.choice([1, 2, 4, 8, 16, 32, 64, 128, 256], size=n, p=[.2, .15, .15, .15, .1, .1, .05, .05, .05])
    sizes = np.minimum(sizes, nodes * 8)
    jobs = [job(i, int(g), t, d) for i, (g, t, d) in
            enumerate(zip(sizes, np.cumsum(rng.exponential(40.0, n)), rng.lognormal(7.0, 1.5, n)))]
    fast = engine(jobs, nodes=nodes, policy="backfill", horizon=5e5, debug=False, backfill_window=window)
    assert fast.n_scans_skipped > 10
    slow = Engine([pool(nodes)], jobs, scheduler=SchedulerSpec(policy="backfill", backfill_window=window),
                  horizon_s=5e5, sample_interval_s=3600.0, seed=1)
    slow.skip_fruitless = False
    slow.run()
    assert slow.n_scans_skipped == 0
    assert [(r.start_s, r.end_s) for r in fast.runs] == [(r.start_s, r.end_s) for r in slow.runs]
    assert fast.counts["backfilled"] == slow.counts["backfilled"] > 50


def test_finishes_and_samples_at_one_instant_go_in_simpy_order():
    """Finishes live in their own heap, but a finish and a SimPy event at
    the same instant still go in SimPy's order (time, priority, eid): at
    t = 3600 job a (started at 0, before the sample at 3600 was scheduled)
    finishes first, then the sample, then job b (started at 1800, after)."""
    eng = engine([job(0, 8, 0.0, 3600.0), job(1, 8, 1800.0, 1800.0)], nodes=4, policy="fifo", horizon=3 * 3600.0)
    rows = {row[0]: row[2] for row in eng.util_rows}     # time -> GPUs allocated
    assert rows[0.0] == 8 and rows[3600.0] == 8 and rows[7200.0] == 0
    assert [r.end_s for r in eng.runs] == [3600.0, 3600.0]


def test_preempting_one_of_jobs_ending_together():
    """Three jobs end at the same instant (one finish time, three runs under
    it); a higher-priority gang preempts one of them mid-run: the others
    still finish at that instant, the preempted one later, and the books
    (checked after every pass) stay right."""
    jobs = [job(i, 8, 0.0, 5000.0) for i in range(3)] + [job(3, 8, 1000.0, 500.0, priority=5)]
    eng = engine(jobs, nodes=3, policy="priority", preemption=True, horizon=1e5)
    runs = by_id(eng)
    assert runs["3"].start_s == 1000.0 and runs["3"].end_s == 1500.0
    ends = sorted(runs[str(i)].end_s for i in range(3))
    assert ends[:2] == [5000.0, 5000.0] and ends[2] > 5000.0
    assert sum(runs[str(i)].preemptions for i in range(3)) == 1
    assert eng.counts["completed"] == 4
