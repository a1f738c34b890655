"""The cluster engine: jobs meet the cluster in SimPy time.

Only job-level events exist: submit, start, finish, preemption, failure,
repair, cancel, autoscale decisions and sampling ticks. A job's run time
comes from its fixed duration or from the performance models for the
placement it actually got (sim/placement.py), never from one event per
step; checkpoints are accounted in closed form (sim/failures.py).

The clock and the event heap are SimPy's (``simpy.Environment``); the run
loop (``Engine._loop``, the equivalent of ``env.run(until=horizon)``) adds
two things that keep a job's cost to a few microseconds:

* arrivals are not events: jobs sorted by submit time are walked by a
  cursor, merged with the heap (a job arriving at the same time as a heap
  event comes first), so a submit costs no heap push at all;
* a job's finish is its end time in a heap of floats next to SimPy's
  queue (floats order faster than SimPy's ``(time, priority, eid, event)``
  tuples) with the run under that time in a dict, dispatched by the loop
  (no Process, no Timeout object, no callback list); it takes an eid from
  SimPy's counter, so a finish and a SimPy event at the same time go in
  SimPy's own order. A job preempted or failed drops its entry; its time
  pops as a no-op. Every other event (sampling, autoscaling, failures,
  repairs, cancels) is an ordinary SimPy Timeout with a callback.

Events at the same time are batched: arrivals and finishes at one instant
lead to one scheduling pass, run before anything at a later time and
before any other event (so a sample sees the pass's result).

Per event the engine does bounded work: placement and release through the
indexes of sim/cluster.py (O(1) for a job within a node, O(nodes of the job
+ groups touched) for a gang), queue operations through sim/scheduler.py
(O(1) amortized for fifo and backfill, O(log n) for the keyed orders), a
backfill pass over at most ``backfill_window`` waiting jobs (those too big
for the free capacity rejected by one comparison each; a pass that could
not start anything is skipped, see ``_backfill``), and a reservation walk
over running jobs by end time (a copy of the finish times' heap, popped as
far as the walk goes) only when the blocked head job changes or the
cluster changed unexpectedly (failure, preemption, autoscaling).
Counters, per-family allocations and the demand integrals are plain ints
and floats updated in place (sim/metrics.py: O(1) per change).

This module, sim/cluster.py, sim/scheduler.py and sim/metrics.py are
compiled with mypyc at install (setup.py): they must type-check on their
own (``mypy --follow-imports=skip --ignore-missing-imports`` on the four),
a declared type is enforced at run time there (an int attribute refuses a
float), and a value of a declared int, float or class type runs as C.

``simulate(scenario, catalogs, progress)`` is the whole run: jobs from the
workloads (trace loaders, sim/generators.py), fleets (sim/fleet.py) and
request-level simulations (sim/requests.py), then the engine, then raw
results that sim/outputs.py turns into tables and the summary.
"""
from __future__ import annotations

import heapq
from heapq import heappush
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Optional, cast

import numpy as np
import simpy
from simpy.events import NORMAL, Timeout

from sim.cluster import DOWN, UP, Allocation, IndexedSet, PoolState, topology_levels
from sim.failures import causes as failure_causes, wall_time, work_done
from sim.metrics import Demand
from sim.placement import Placement, WorkTimer, ideal_tiers, tightest_estimator
from sim.scheduler import DEFAULT_BACKFILL_WINDOW, FifoQueue, Queue, WindowCache, make_queue
from workloads.errors import InputError
from workloads.jobs import Job

NO_PM: Final = 1 << 30
"""More GPUs than any node has (pmask >> NO_PM == 0): no job was turned down
for want of a partly free node."""
INF: Final = math.inf
PENDING: Final = 0
WAITING: Final = 1
QUEUED: Final = 2
RUNNING: Final = 3
COMPLETED: Final = 4
CANCELLED: Final = 5
STATE_NAMES = {QUEUED: "queued", RUNNING: "running", COMPLETED: "completed", CANCELLED: "cancelled",
               WAITING: "waiting", PENDING: "pending"}
TIER_NAMES = ("nvlink", "leaf", "spine", "core")

PREEMPT_SCAN_LIMIT = 10000
"""Running jobs one preemption decision may consider as victims (bounds
the work of a decision on a huge cluster)."""

PROGRESS_EVERY_S = 1.0
"""Wall seconds between progress reports."""


# ------------------------------------------------------------------ inputs
@dataclass
class PoolInfo:
    """One pool as the generators and duration models see it. levels: its
    nested node groups (sim.cluster.topology_levels of the pool's
    hardware.topology layout)."""
    name: str
    system: Any            # hardware.catalog.System
    gpu: Any               # hardware.catalog.GPU
    fabric: Any            # hardware.catalog.Fabric
    nodes: int             # active nodes (spares excluded)
    gpus_per_node: int
    spare_nodes: int = 0
    levels: list = field(default_factory=list)
    oversubscription: tuple = (1.0, 1.0, 1.0, 1.0)   # per tier spanned (nvlink, leaf, spine, core)

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass
class WorkloadContext:
    """What a job generator gets for one scenario workload.

    rng is seeded from (scenario seed, workload index): draw every random
    number from it. pool is the pool the workload's jobs run in (its
    `pool:` key, else the largest). estimate_s(job) is the job's duration in
    seconds on the best placement for its size (same models and cache the
    engine uses), for sizing decisions such as deadlines."""
    scenario: Any
    catalogs: Any
    workload: Any
    index: int
    rng: Any
    horizon_s: float
    pools: dict
    pool: PoolInfo
    estimate_s: Optional[Callable[[Any], float]] = None


class Run:
    """Engine state of one job (or one inference replica). run_D and end_at
    (work and expected end of the current run) are kept only where jobs
    can be interrupted (failures, preemption, fleets)."""
    # what a submit, start and finish touch comes first (fewer cache lines)
    __slots__ = ("gpus", "pools", "dkey", "state", "submit_s", "dur", "progress", "pending_over", "pool", "nodes",
                 "per_node", "alloc", "tiers", "run_D", "run_start", "end_at", "start_s", "fin", "fam", "gpu_s",
                 "end_s", "i", "job", "wkey", "est_s", "tenant", "priority", "family", "run_over", "gen", "lost_s",
                 "restarts", "preemptions", "deps", "qkey", "fleet", "checkpointable", "ready")

    def __init__(self, i: int, job: Job, pools: tuple, dkey: int, fam: int, wkey: int = -1):
        self.i = i
        self.job = job
        self.gpus: int = job.gpus
        self.dur: Optional[float] = job.duration_s
        self.wkey = wkey
        self.pools: tuple[int, ...] = pools
        self.est_s = 0.0
        self.tenant = job.tenant
        self.priority: int = int(job.priority)
        self.dkey = dkey
        self.fam = fam
        self.family = job.family
        self.state = PENDING
        self.submit_s: Optional[float] = None
        self.start_s: Optional[float] = None
        self.end_s: Optional[float] = None
        self.pool = -1
        self.nodes: Any = None            # the nodes held (a tuple) while running
        self.per_node = 0
        self.alloc = 0
        self.run_start = 0.0
        self.run_over = 0.0
        self.run_D = 0.0
        self.end_at = 0.0
        self.progress = 0.0
        self.pending_over = 0.0
        self.fin = -1
        self.gen = 0
        self.gpu_s = 0.0
        self.lost_s = 0.0
        self.restarts = 0
        self.preemptions = 0
        self.deps = 0
        self.qkey: Any = None
        self.fleet: Any = None
        self.tiers = -1
        self.checkpointable = job.checkpointable
        self.ready = False

    @property
    def seq(self) -> int:
        return self.i


@dataclass
class Reservation:
    """Where and when the blocked head job will start (EASY backfill)."""
    pool: int
    shadow: float
    single: bool = True
    node: int = -1
    node_free: int = 0
    extra: int = 0
    rejected: set[int] = field(default_factory=set)    # jobs that would delay the head for as long as this holds


@dataclass(slots=True)
class ScanMemo:
    """What the last full backfill pass under a reservation established
    (Engine._backfill): every job of the window of at most `fit` GPUs was
    turned down for a reason that lasts while the reservation holds, those
    of `pm` GPUs or more only while no partly free node has room for them;
    with a FIFO queue, jobs that moved into the window from beyond it since
    (`moved`: their seqs are above `seq`) were not looked at."""
    key: Optional[tuple]
    fit: int
    pm: int = NO_PM
    seq: int = -1
    moved: bool = False


@dataclass
class PoolRT:
    info: PoolInfo
    state: PoolState


# ------------------------------------------------------------------ engine
class Engine:
    """One simulation: build it with pools, jobs and fleets, call run()."""

    def __init__(self, pools: list[PoolInfo], jobs: list[Job], fleets: list | None = None, *, scheduler=None,
                 failures=None, horizon_s: Optional[float] = None, sample_interval_s: float = 3600.0,
                 seed: int = 0, timer: WorkTimer | None = None, progress: Callable | None = None,
                 pue: float = 1.3, debug: bool = False):
        from sim.scenario import SchedulerSpec, FailuresSpec

        if horizon_s is None:
            raise TypeError("Engine() needs horizon_s, the simulated seconds")
        self.skip_fruitless = True
        """Skip a scheduling pass that provably could start nothing (_backfill's
        rule); False runs every pass (the same schedule, slower: tests)."""
        self.env = simpy.Environment()
        self.horizon = float(horizon_s)
        self.interval = float(sample_interval_s)
        self.sched = scheduler or SchedulerSpec()
        self.policy = self.sched.policy
        self.backfill = self.policy == "backfill" or bool(getattr(self.sched, "backfill", None))
        self.window = int(getattr(self.sched, "backfill_window", None) or DEFAULT_BACKFILL_WINDOW)
        self.preemption = bool(self.sched.preemption)
        self.topology = self.sched.placement == "topology"
        self.failures = failures if (failures is not None and failures.enabled) else None
        fdefaults = failures or FailuresSpec()
        self.ckpt_interval = fdefaults.checkpoint_interval if self.failures else INF
        self.ckpt_cost = fdefaults.checkpoint_cost if self.failures else 0.0
        self.preempt_over = fdefaults.checkpoint_cost + fdefaults.restart_delay
        self.restart_delay = fdefaults.restart_delay
        self.seed = seed
        self.debug = debug
        self.shadows: dict[int, float] = {}      # debug: first reservation of each blocked head
        self.timer = timer or WorkTimer()
        self.progress_fn = progress
        self.pue = pue
        # pools
        self.pools: list[PoolRT] = []
        for i, info in enumerate(pools):
            st = PoolState(i, info.name, info.gpus_per_node, info.nodes, info.spare_nodes, info.levels)
            self.pools.append(PoolRT(info, st))
        self.pool_index = {p.info.name: i for i, p in enumerate(self.pools)}
        self.states: list[PoolState] = [p.state for p in self.pools]
        self._one_pool = len(self.pools) == 1
        self._gpn = [p.state.gpn for p in self.pools]
        # SimPy's event heap and event counter (simpy.Environment internals
        # since SimPy 3): finish entries go straight in, with SimPy's own
        # (time, priority, eid, event) layout
        if not all(hasattr(self.env, a) for a in ("_queue", "_eid", "_now")):  # pragma: no cover
            raise RuntimeError(f"simpy {simpy.__version__} lacks Environment._queue/_eid/_now the engine relies on")
        self._eid = self.env._eid
        # finishes: their times in a heap of floats (cheaper to order than
        # SimPy's tuples), the runs ending at each time (one, or a list in
        # start order); SimPy's own queue keeps every other event
        self._fh: list[float] = []
        self._fa: dict[float, Any] = {}
        from hardware.power import gpu_busy_w
        self._power = []
        for pr in self.pools:
            sysm, gpu = pr.info.system, pr.info.gpu
            if sysm is None or gpu is None:
                self._power.append((0.0, 0.0))
            else:
                self._power.append((sysm.node_overhead_w + sysm.gpus_per_node * gpu.idle_w,
                                    gpu_busy_w(gpu) - gpu.idle_w))
        self.nominal_gpus = sum(p.info.nodes * p.info.gpus_per_node for p in self.pools)
        # accounting
        self.demand = Demand(self.interval)
        self.fam_names: list[str] = []
        self.fam_gpus: list[int] = []             # GPUs allocated per family (fam_names order)
        self.tenant_alloc: dict[str, int] = {}
        self.pool_alloc = [0] * len(self.pools)
        self.pool_gpu_s = [0.0] * len(self.pools)
        self.queued_jobs = 0
        self.queued_gpus = 0
        self.n_submitted = 0
        self.n_started = 0
        self.n_completed = 0
        self.n_backfilled = 0
        self._events = 0                          # events other than submits, starts and finishes
        self._counts = {"preemptions": 0, "failures": 0, "failures_hitting_jobs": 0, "repairs": 0, "cancelled": 0,
                        "scale_ups": 0, "scale_downs": 0, "reservations": 0}
        self.failure_causes: dict[str, int] = {}
        self._tiers_interrupted = [0, 0, 0, 0]   # starts by tiers spanned of runs since interrupted
        self.util_rows: list = []
        # jobs, in submit order
        self.queue: Queue = make_queue(self.sched, self.tenant_alloc)
        subs = [j.submit_s for j in jobs]
        order = sorted(range(len(jobs)), key=subs.__getitem__)
        self.runs: list[Run] = []
        all_pools = tuple(range(len(self.pools)))
        dkeys: dict = {}
        fams: dict = {}
        wkeys: dict = {}
        pool_of: dict = {None: all_pools}
        runs = self.runs
        for k in order:
            job = jobs[k]
            pools_ok = pool_of.get(job.pool)
            if pools_ok is None:
                if job.pool not in self.pool_index:
                    from workloads.errors import unknown_name
                    raise unknown_name("pool", job.pool, self.pool_index, f"job {job.job_id!r}")
                pools_ok = pool_of[job.pool] = (self.pool_index[job.pool],)
            fk = (job.family, job.kind)
            dk = dkeys.get(fk)
            if dk is None:
                dk = dkeys[fk] = self.demand.key(job.family, job.kind)
            fi = fams.get(job.family)
            if fi is None:
                fi = fams[job.family] = self._family(job.family)
            wk = -1
            if job.work is not None and job.duration_s is None and job.duration_fn is None:
                wk = wkeys.setdefault((job.work, job.gpus), len(wkeys))
            runs.append(Run(len(runs), job, pools_ok, dk, fi, wk))
        self.n_jobs = len(runs)
        self._gpus: list[int] = [r.gpus for r in runs]       # by run index, for the backfill scan
        self._sub: list[float] = [max(0.0, float(r.job.submit_s)) for r in runs] + [INF]
        self._dcache: dict = {}                   # (work key, pool, tiers) -> seconds
        self._check_fit()
        # dependencies
        self.dependents: dict[int, list[int]] = {}
        if any(r.job.after for r in runs):
            ids = {r.job.job_id: r.i for r in runs}
            for r in runs:
                for dep in r.job.after:
                    j = ids.get(dep)
                    if j is None:
                        raise InputError(f"job {r.job.job_id!r} waits for unknown job {dep!r}", "job after",
                                         "name a job of the scenario")
                    r.deps += 1
                    self.dependents.setdefault(j, []).append(r.i)
        self._cancels = any(r.job.cancel_s is not None for r in runs)
        # fleets
        self.fleets = list(fleets or [])
        for f in self.fleets:
            f.dkey = self.demand.key("inference", "serving")
            if "inference" not in fams:
                fams["inference"] = self._family("inference")
        # indexes used by preemption and failures
        self.by_prio: dict[int, IndexedSet] | None = {} if self.preemption else None
        self.prio_alloc: dict[int, int] = {}
        need_nodes = self.preemption or self.failures is not None or bool(self.fleets)
        self.node_jobs: Any = [[[] for _ in range(p.state.n)] for p in self.pools] if need_nodes else None
        # backfill: latest expected end of the occupants of each node shared
        # by small jobs (a value in the past once they left; recomputed when
        # one leaves early)
        self.node_end: Optional[list[list[float]]] = (
            [[0.0] * p.state.n for p in self.pools] if self.backfill else None)
        self._tracking = self.by_prio is not None or self.node_jobs is not None or self.policy == "fair-share"
        # scheduling state
        self._dirty = True
        self._blocked: Optional[int] = None
        self._new: list[Run] = []
        self._res: Reservation | None = None
        self._res_key: Optional[tuple] = None
        self._res_version = 0
        self._bad_sizes: set = set()      # backfill: sizes whose placement would delay the head (this pass)
        self._bf_state: ScanMemo | None = None   # backfill: what the last full pass established
        self._bf_node = False             # backfill: a rejection depended on the nodes picked
        self._bf_pm = NO_PM               # backfill: smallest size turned down for want of a partly free node
        self.n_scans_skipped = 0
        self._window = WindowCache()      # backfill: the window's candidates (sim/scheduler.py)
        self._wall0: Optional[float] = None
        self._last_progress = 0.0
        self.rng = np.random.default_rng([seed, 1])
        self.causes = []
        if self.failures is not None:
            total_gpus = sum(p.state.n * p.state.gpn for p in self.pools)
            total_nodes = sum(p.state.n for p in self.pools)
            self.causes = failure_causes(self.failures, total_gpus, total_nodes)
        self.fail_rate = sum(c.rate_per_s for c in self.causes)
        if self.policy == "sjf":
            for r in runs:
                r.est_s = self.estimate(r.job)

    def _family(self, name: str) -> int:
        self.fam_names.append(name)
        self.fam_gpus.append(0)
        return len(self.fam_names) - 1

    # ------------------------------------------------------------ counters
    @property
    def counts(self) -> dict:
        """Event counts: submitted, started, completed, backfilled,
        preemptions, failures, repairs, cancelled, scale-ups/downs, ..."""
        c = {"submitted": self.n_submitted, "started": self.n_started, "completed": self.n_completed,
             "backfilled": self.n_backfilled}
        c.update(self._counts)
        return c

    @property
    def events(self) -> int:
        return self.n_submitted + self.n_started + self.n_completed + self._events

    @property
    def tier_starts(self) -> list[int]:
        """Job starts (restarts included) by tiers spanned: 0 NVLink, 1 leaf,
        2 spine, 3 core. Counted from the runs when asked (a start of a
        running or finished job is its last; interrupted starts were
        counted as they ended)."""
        out = list(self._tiers_interrupted)
        for r in self.runs:
            if (r.state == RUNNING or r.state == COMPLETED) and r.fleet is None:
                out[r.tiers] += 1
        return out

    @property
    def allocated(self) -> int:
        """GPUs allocated now."""
        return sum(self.pool_alloc)

    @property
    def fam_alloc(self) -> dict:
        """GPUs allocated now per family."""
        return dict(zip(self.fam_names, self.fam_gpus))

    # -------------------------------------------------------------- checks
    def _check_fit(self) -> None:
        """A job that can never fit the cluster is an input error."""
        biggest: dict = {}
        for r in self.runs:
            b = biggest.get(r.pools)
            if b is None or r.gpus > b.gpus:
                biggest[r.pools] = r
        for pools, r in biggest.items():
            ok = False
            for p in pools:
                st = self.pools[p].state
                if r.gpus <= st.active_nodes * st.gpn and st.nodes_for(r.gpus) <= st.active_nodes:
                    ok = True
                    break
            if not ok:
                where = self.pools[pools[0]].info.name if len(pools) == 1 else "any pool"
                most = max(self.pools[p].state.active_nodes * self.pools[p].state.gpn for p in pools)
                raise InputError(f"job {r.job.job_id!r} asks for {r.gpus} GPUs but {where} has {most}",
                                 f"job {r.job.job_id}" + (f" (workload {r.job.workload})" if r.job.workload else ""),
                                 "ask for fewer GPUs or add nodes")

    def placement(self, p: int, gpus: int, nodes: tuple, tiers: int) -> Placement:
        info = self.pools[p].info
        return Placement(pool=info.name, system=info.system, gpu=info.gpu, fabric=info.fabric, gpus=gpus,
                         nodes=nodes, tiers_spanned=tiers, oversubscription=info.oversubscription[tiers])

    def estimate(self, job: Job, pool: int | None = None) -> float:
        """Duration of a job at the tightest placement of its first pool."""
        if job.duration_s is not None:
            return float(job.duration_s)
        if pool is None:
            pool = self.pool_index[job.pool] if job.pool is not None else 0
        st = self.pools[pool].state
        k = st.nodes_for(job.gpus)
        tiers = ideal_tiers(st, job.gpus)
        return self.timer.seconds(job, self.placement(pool, job.gpus, tuple(range(k)), tiers))

    # ------------------------------------------------------------ plumbing
    def _at(self, delay: float, fn, value=None) -> None:
        ev = Timeout(self.env, delay, value)
        ev.callbacks.append(fn)

    def run(self) -> "Engine":
        self._wall0 = time.perf_counter()
        for k, f in enumerate(self.fleets):
            if f.start_s < self.horizon:
                self._at(f.start_s, self._on_fleet_tick, k)
        if self.fail_rate > 0:
            self._at(self.rng.exponential(1.0 / self.fail_rate), self._on_failure)
        self._at(0.0, self._on_sample, 0)
        self._loop(self.horizon)
        self._finalize()
        return self

    def _loop(self, until: float) -> None:
        """env.run(until) with arrivals merged in from the sorted submit
        times and finish entries dispatched directly (see the module doc).
        The common arrival (no dependency, no cancel time, a policy that
        starts a job on an empty queue at once) is handled inline: this
        loop is where a million-job run spends its time."""
        env = self.env
        q = env._queue
        pop = heapq.heappop
        sub = self._sub
        runs = self.runs
        arrive = self._arrive
        finish = self._finish
        start = self._start
        schedule = self._schedule if self.debug else self._pass
        queue = self.queue
        new = self._new
        states = self.states
        topology = self.topology
        dm = self.demand
        wait, wacc = dm.wait, dm.wait_acc
        srv, sacc = dm.srv, dm.srv_acc
        pool_gpu_s, pool_alloc, fam_gpus = self.pool_gpu_s, self.pool_alloc, self.fam_gpus
        # a finish needs no more than the books of _finish/_release: nothing
        # tracks runs (failures, preemption, fleets, fair-share) or waits for them
        lean = not self._tracking and not self.dependents
        plain = not self._cancels and not self.dependents and self.policy != "fair-share"
        # a submitted job never becomes the head of a non-empty fifo queue
        early = self.backfill and isinstance(self.queue, FifoQueue)
        RunT = Run
        debug = self.debug
        k = 0
        now = env._now
        want = False
        fh, fa = self._fh, self._fa
        while True:
            # the next entry: a finish (fh, fa) or a SimPy event (q), in SimPy's
            # order on a tie: (time, priority, eid), a finish being NORMAL
            t = fh[0] if fh else INF
            fin = True
            if q:
                top = q[0]
                ts: float = top[0]
                if ts < t or (ts == t and (top[1], top[2]) < (NORMAL, self._first_eid(t))):
                    t = ts
                    fin = False
            a = sub[k]
            if a <= t:
                if want and a > now:
                    want = False
                    if self.queued_jobs or debug:
                        schedule()
                        continue
                if a >= until:
                    break
                env._now = now = a
                if debug or not plain:
                    want = True
                if not plain:
                    k = arrive(k, now)
                    continue
                while True:
                    # submit (as _arrive does)
                    r = runs[k]
                    k += 1
                    g = r.gpus
                    r.state = QUEUED
                    r.submit_s = now
                    if not self.queued_jobs:
                        # the queue is empty: the job is the head; start it if it fits
                        for p in r.pools:
                            st = states[p]
                            gpn = st.gpn
                            if (st.whole_free or st.pmask >> g) if g <= gpn else st.whole_free * gpn >= g:
                                nodes, per, tiers = cast(Allocation, st.allocate(g, topology))
                                start(r, p, nodes, per, tiers, now)
                                break
                        else:
                            self._enqueue(r, now)
                            want = True
                    elif early and not self._dirty and self._blocked is not None and queue.head() == self._blocked:
                        # the head is blocked and nothing was freed since the pass
                        # that found it so: check the job as that pass would, before
                        # it joins the queue (most that backfill start right here);
                        # a pass after it would have nothing new to look at
                        if not self._backfill_arrival(r, now):
                            self._enqueue(r, now, checked=True)
                    else:
                        want = True
                        # (_enqueue inline)
                        self.queued_jobs += 1
                        self.queued_gpus += g
                        dk = r.dkey
                        wait[dk] += g
                        wacc[dk] += g * (dm.end - now)
                        queue.push(r)
                        new.append(r)
                    if sub[k] > now:
                        break
                self.n_submitted = k          # plain arrivals: every one is submitted
                continue
            if want and (t > now or not fin):
                want = False
                if self.queued_jobs or debug:
                    schedule()
                    continue
            if t >= until:
                break
            if fin:
                pop(fh)
                x = fa.pop(t, None)
                if x is not None:
                    if x.__class__ is RunT:
                        fr: Run = x
                    else:
                        # runs ending at the same time, in the order they started
                        fr = x.pop(0)
                        fa[t] = x if len(x) > 1 else x[0]
                    env._now = now = t
                    fr.fin = -1
                    if lean:
                        # _finish and _release inline, for runs nothing else tracks
                        p = fr.pool
                        states[p].release(fr.nodes, fr.per_node)
                        al = fr.alloc
                        used = al * (t - fr.run_start)
                        fr.gpu_s += used
                        pool_gpu_s[p] += used
                        pool_alloc[p] -= al
                        fam_gpus[fr.fam] -= al
                        fr.nodes = None
                        fr.state = COMPLETED
                        fr.end_s = t
                        g = fr.gpus
                        dk = fr.dkey
                        srv[dk] -= g
                        sacc[dk] -= g * (dm.end - t)
                        self.n_completed += 1
                        self._dirty = True
                    else:
                        finish(fr, t)
                    want = True
                continue
            t, _, eid, ev = pop(q)
            env._now = now = t
            callbacks, ev.callbacks = ev.callbacks, None
            for cb in callbacks:
                cb(ev)
            if not ev._ok and not hasattr(ev, "_defused"):
                exc = type(ev._value)(*ev._value.args)
                exc.__cause__ = ev._value
                raise exc
        env._now = until

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self._wall0 if self._wall0 is not None else 0.0

    # ------------------------------------------------------------- arrivals
    def _arrive(self, k: int, now: float) -> int:
        """Submit every job whose submit time is now (from index k); returns
        the index of the next job to arrive. A job that finds the queue
        empty starts at once if it fits (not under fair-share, whose head
        depends on the tenants)."""
        runs, sub = self.runs, self._sub
        direct = self.policy != "fair-share"
        while sub[k] <= now:
            r = runs[k]
            k += 1
            if r.job.cancel_s is not None:
                self._at(max(0.0, r.job.cancel_s - now), self._on_cancel, r.i)
            if r.deps:
                r.state = WAITING
                continue
            r.state = QUEUED
            r.submit_s = now
            self.n_submitted += 1
            if direct and not self.queued_jobs:
                g = r.gpus
                for p in r.pools:
                    st = self.states[p]
                    if st.fits(g):
                        nodes, per, tiers = cast(Allocation, st.allocate(g, self.topology))
                        self._start(r, p, nodes, per, tiers, now)
                        break
                else:
                    self._enqueue(r, now)
                continue
            self._enqueue(r, now)
        return k

    def _backfill_arrival(self, r: Run, now: float) -> bool:
        """Backfill check of a job arriving while the head is blocked and
        no capacity was freed since: start it now if it may go ahead of the
        head (the check a pass would make once it joined the queue)."""
        b = self._blocked
        assert b is not None
        head = self.runs[b]
        res = self._reservation(head)
        self._bad_sizes.clear()
        m = self._bf_state
        if m is not None and r.gpus > self.states[0].max_fit():
            # too big now: a pass skipped later must not see it fit
            m.fit = min(m.fit, r.gpus - 1)
        self._bf_node = False
        self._bf_pm = NO_PM
        if self._backfill_one(r, head, res, queued=False):
            return True
        self._bf_settle()
        return False

    def _bf_settle(self) -> None:
        """Fold what the backfill checks just made turned down into the skip
        state of _backfill: a choice of nodes voids it; a job turned down for
        want of a partly free node holds it only while there is none."""
        if self._bf_node:
            self._bf_state = None
        elif self._bf_pm != NO_PM:
            m = self._bf_state
            if m is not None and self._bf_pm < m.pm:
                m.pm = self._bf_pm

    def _enqueue(self, r: Run, now: float, checked: bool = False) -> None:
        """A submitted (or interrupted) job waits in the queue (checked: its
        backfill check was made already)."""
        g = r.gpus
        self.queued_jobs += 1
        self.queued_gpus += g
        dm = self.demand
        dk = r.dkey
        dm.wait[dk] += g
        dm.wait_acc[dk] += g * (dm.end - now)
        self.queue.push(r)
        if not checked:
            self._new.append(r)

    def _dequeue(self, r: Run, now: float) -> None:
        """A waiting job leaves the queue (it starts, or is cancelled)."""
        m = self._bf_state
        if m is not None and self.queued_jobs > self.window + 1 and not self.queue.is_last(r):
            # a job from beyond the backfill window moves into it, unchecked (with
            # at most window + 1 jobs queued every one behind the head is in it):
            # in a FIFO queue it is one of those after m.seq
            if self.queue.__class__ is FifoQueue:
                m.moved = True
            else:
                self._bf_state = None
        g = r.gpus
        q = self.queue
        q.remove(r)
        w = self._window
        if w.key is not None:
            if self._res is not None and w.key[0] == self._res_key and isinstance(q, FifoQueue):
                w.removed(q, r.qkey, self.window, self._res.rejected)
            else:
                w.key = None
        self.queued_jobs -= 1
        self.queued_gpus -= g
        dm = self.demand
        dk = r.dkey
        dm.wait[dk] -= g
        dm.wait_acc[dk] -= g * (dm.end - now)

    def _submit(self, r: Run, now: float) -> None:
        """Submit a job later than its arrival (a dependency finished)."""
        r.state = QUEUED
        r.submit_s = now
        self.n_submitted += 1
        self._enqueue(r, now)

    def _on_cancel(self, ev) -> None:
        r = self.runs[ev._value]
        now = self.env.now
        if r.state == QUEUED:
            self._dequeue(r, now)
        elif r.state == WAITING:
            r.submit_s = now
        else:
            return
        r.state = CANCELLED
        r.end_s = now
        self._counts["cancelled"] += 1
        self._events += 1
        self._schedule()

    # ----------------------------------------------------------- scheduling
    def _schedule(self) -> None:
        self._pass()
        if self.debug:
            self.check()

    def _pass(self) -> None:
        q = self.queue
        runs = self.runs
        if not self._dirty and self._blocked is not None:
            h = q.head()
            if h == self._blocked:
                # only submissions since the blocked pass: they are the only new candidates
                new = self._new
                if self.backfill and new:
                    head = runs[h]
                    res = self._reservation(head)
                    self._bad_sizes.clear()
                    one = self._one_pool
                    for r in new[:]:
                        if r.state == QUEUED and r.i != h:
                            m = self._bf_state
                            if m is not None and one and r.gpus > self.states[0].max_fit():
                                # too big now: a pass skipped later must not see it fit
                                m.fit = min(m.fit, r.gpus - 1)
                            self._bf_node = False
                            self._bf_pm = NO_PM
                            self._backfill_one(r, head, res)
                            self._bf_settle()
                new.clear()
                return
        self._dirty = False
        fresh = bool(self._new)
        self._new.clear()
        m = self._bf_state
        if m is not None and not fresh and self.skip_fruitless and not self.preemption and self._one_pool \
                and not m.moved and m.key == self._res_key \
                and self._res_key == (self._blocked, self._res_version) and q.head() == self._blocked \
                and self.states[0].max_fit() <= m.fit and not self.states[0].pmask >> m.pm:
            # the blocked head needs more than the largest job that fits then (m.fit),
            # and no more fits now: the head still waits and the backfill pass would
            # be skipped (_backfill's rule)
            self.n_scans_skipped += 1
            return
        while True:
            h = q.head()
            if h is None:
                self._blocked = None
                return
            run = runs[h]
            if self._try_start(run):
                continue
            if self.preemption and self._preempt_for(run):
                continue
            self._blocked = h
            if self.backfill and self.queued_jobs > 1:
                self._backfill(run, fresh)
            return

    def _try_start(self, r: Run) -> bool:
        pools = self.pools
        for p in r.pools:
            st = pools[p].state
            if st.fits(r.gpus):
                nodes, per, tiers = cast(Allocation, st.allocate(r.gpus, self.topology))
                now: float = self.env._now
                self._dequeue(r, now)
                self._start(r, p, nodes, per, tiers, now)
                return True
        return False

    def _duration(self, r: Run, p: int, nodes: tuple, tiers: int) -> float:
        """Seconds of the job's work on this placement (fixed, or from the
        performance models, cached per (work, GPUs, pool, tiers))."""
        if r.dur is not None:
            return r.dur
        if r.wkey >= 0:
            key = (r.wkey, p, tiers)
            d = self._dcache.get(key)
            if d is None:
                d = self._dcache[key] = self.timer.seconds(r.job, self.placement(p, r.gpus, nodes, tiers))
            return d
        return self.timer.seconds(r.job, self.placement(p, r.gpus, nodes, tiers))

    def _wall(self, r: Run, D: float) -> float:
        remaining = (1.0 - r.progress) * D
        if self.ckpt_interval == INF:
            return r.pending_over + remaining
        if r.checkpointable:
            return wall_time(remaining, r.pending_over, self.ckpt_interval, self.ckpt_cost)
        return wall_time(remaining, r.pending_over, INF, 0.0)

    def _start(self, r: Run, p: int, nodes: tuple, per: int, tiers: int, now: float, D: float | None = None) -> None:
        if D is None:
            D = r.dur
            if D is None:
                D = self._duration(r, p, nodes, tiers)
        if self._tracking and (r.progress or r.pending_over or self.ckpt_cost):
            # (only runs that can be interrupted resume or pay for checkpoints)
            wall = self._wall(r, D)
            r.run_over = r.pending_over
            r.pending_over = 0.0
        else:
            wall = D
        a = len(nodes) * per
        end = now + wall
        r.pool = p
        r.nodes = nodes
        r.per_node = per
        r.alloc = a
        r.tiers = tiers
        r.run_start = now
        if r.start_s is None:
            r.start_s = now
        r.state = RUNNING
        r.fin = next(self._eid)
        heappush(self._fh, end)
        x = self._fa.setdefault(end, r)
        if x is not r:
            if x.__class__ is list:
                x.append(r)
            else:
                self._fa[end] = [x, r]
        # accounting
        self.pool_alloc[p] += a
        self.fam_gpus[r.fam] += a
        if self._tracking:
            # what interruptions (failures, preemption) need
            r.run_D = D
            r.end_at = end
            self._track(r, p, a)
        g = r.gpus
        dm = self.demand
        dk = r.dkey
        dm.srv[dk] += g
        dm.srv_acc[dk] += g * (dm.end - now)
        ends = self.node_end
        if ends is not None and per < self._gpn[p]:
            # only nodes shared by small jobs can take a backfill candidate
            # while occupied: their latest end is what the check needs
            e = ends[p]
            node = nodes[0]
            if e[node] < end:
                e[node] = end
        self.n_started += 1

    def _track(self, r: Run, p: int, a: int) -> None:
        """Indexes only some configurations need: tenants' GPUs (fair-share),
        running jobs by priority (preemption), jobs per node (failures,
        preemption, fleets)."""
        self.tenant_alloc[r.tenant] = self.tenant_alloc.get(r.tenant, 0) + a
        if self.by_prio is not None:
            s = self.by_prio.get(r.priority)
            if s is None:
                s = self.by_prio[r.priority] = IndexedSet()
            s.add(r.i)
            self.prio_alloc[r.priority] = self.prio_alloc.get(r.priority, 0) + a
        if self.node_jobs is not None:
            nj = self.node_jobs[p]
            for node in r.nodes:
                nj[node].append(r.i)

    def _untrack(self, r: Run, p: int, a: int, now: float) -> None:
        self.tenant_alloc[r.tenant] -= a
        if self.by_prio is not None:
            self.by_prio[r.priority].remove(r.i)
            self.prio_alloc[r.priority] -= a
        if self.node_jobs is not None:
            nj = self.node_jobs[p]
            for node in r.nodes:
                nj[node].remove(r.i)
            if self.node_end is not None and r.end_at > now and r.per_node < self._gpn[p]:
                # left before its expected end: the nodes' latest end is that of who stays
                ends, runs = self.node_end[p], self.runs
                for node in r.nodes:
                    ends[node] = max((runs[j].end_at for j in nj[node]), default=0.0)

    def _account_start(self, r: Run, p: int, a: int, now: float) -> None:
        """Allocation books of a replica start (jobs: _start)."""
        self.pool_alloc[p] += a
        self.fam_gpus[r.fam] += a
        self._track(r, p, a)

    def _release(self, r: Run, now: float) -> None:
        """Give a running job's GPUs back (interrupts, replicas; a finish
        does the same in _finish)."""
        p = r.pool
        self.states[p].release(r.nodes, r.per_node)
        a = r.alloc
        used = a * (now - r.run_start)
        r.gpu_s += used
        self.pool_gpu_s[p] += used
        self.pool_alloc[p] -= a
        self.fam_gpus[r.fam] -= a
        if self._tracking:
            self._untrack(r, p, a, now)
        if r.fin != -1:
            self._drop_finish(r)
        r.nodes = None
        self._dirty = True

    def _drop_finish(self, r: Run) -> None:
        """A run leaves before its finish came due (interrupts: end_at is
        kept): its entry goes; the time stays in the heap, popped as a
        no-op."""
        fa, end = self._fa, r.end_at
        x = fa[end]
        if x is r:
            del fa[end]
        else:
            x.remove(r)          # a list holds two runs or more
            if len(x) == 1:
                fa[end] = x[0]
        r.fin = -1

    def _first_eid(self, t: float) -> int:
        """SimPy eid of the first run finishing at t (-1: none left)."""
        x = self._fa.get(t)
        if x is None:
            return -1
        return x.fin if x.__class__ is Run else x[0].fin

    def _finish(self, r: Run, now: float) -> None:
        """A job's finish entry came due: it completed."""
        self._release(r, now)
        r.state = COMPLETED
        r.end_s = now
        g = r.gpus
        dm = self.demand
        dk = r.dkey
        dm.srv[dk] -= g
        dm.srv_acc[dk] -= g * (dm.end - now)
        self.n_completed += 1
        if self.dependents:
            deps = self.dependents.get(r.i)
            if deps:
                for j in deps:
                    d = self.runs[j]
                    d.deps -= 1
                    if d.deps == 0 and d.state == WAITING:
                        self._submit(d, now)

    # ------------------------------------------------------------- backfill
    def _reservation(self, head: Run) -> Reservation:
        key = (head.i, self._res_version)
        if self._res is not None and self._res_key == key:
            return self._res
        best: Optional[Reservation] = None
        for p in head.pools:
            res = self._reserve_in(p, head)
            if best is None or res.shadow < best.shadow:
                best = res
        assert best is not None            # a job has a pool
        self._res, self._res_key = best, key
        self._counts["reservations"] += 1
        if self.debug:
            self.shadows.setdefault(head.i, best.shadow)
        return best

    def _by_end(self, p: int):
        """(end, run) of the running jobs of pool p in order of expected
        end, lazily: a copy of the finish times' heap, popped only as far
        as the walk goes."""
        h = self._fh[:]
        fa = self._fa
        pop = heapq.heappop
        RunT = Run
        last = -INF
        while h:
            end: float = pop(h)
            if end == last:
                continue          # runs ending together came out at once
            last = end
            x = fa.get(end)
            if x is None:
                continue
            if x.__class__ is RunT:
                one: Run = x
                if one.pool == p:
                    yield end, one
                continue
            for v in x:
                if v.pool == p:
                    yield end, v

    def _reserve_in(self, p: int, head: Run) -> Reservation:
        st = self.pools[p].state
        gpn, free = st.gpn, st.free
        g = head.gpus
        hyp: dict[int, int] = {}
        if g <= gpn:
            for end, v in self._by_end(p):
                per = v.per_node
                for node in v.nodes:
                    f = hyp.get(node, free[node]) + per
                    hyp[node] = f
                    if f >= g:
                        return Reservation(p, end, True, node, f)
            return Reservation(p, INF)
        k = -(-g // gpn)
        wf = st.whole_free
        for end, v in self._by_end(p):
            per = v.per_node
            if per == gpn:
                # whole nodes (a job's nodes are in service while it runs)
                wf += len(v.nodes)
            else:
                node = v.nodes[0]
                f = hyp.get(node, free[node]) + per
                hyp[node] = f
                if f == gpn:
                    wf += 1
            if wf >= k:
                return Reservation(p, end, False, extra=wf - k)
        return Reservation(p, INF, False)

    def _backfill(self, head: Run, fresh: bool = True) -> None:
        """One backfill pass over the window behind the blocked head.

        With one pool a pass is skipped when it could not start anything:
        the last pass under the same reservation checked every job of the
        window that fitted at its end (a job fits iff its size is at most
        the largest fit, which only shrinks as jobs start), nothing it
        turned down depended on the nodes a placement would pick, no job
        joined the window unchecked since (``fresh``: submissions not seen
        yet; _dequeue: one moved in from beyond it), and the largest job
        that fits now is no larger than then, and no partly free node has
        room for a job turned down for want of one. Every job it would look
        at would be turned down again for the same reason: too long and too
        big for what the head leaves, which holds while the reservation
        does (time only moves on, what the head leaves only shrinks). When
        only more fits now, the pass looks at the jobs larger than then."""
        res = self._reservation(head)
        self._bad_sizes.clear()
        runs = self.runs
        rejected = res.rejected
        if self._one_pool:
            st = self.states[0]
            M = st.max_fit()
            key = self._res_key
            m = self._bf_state
            lo, after = 0, None
            if m is not None and not fresh and self.skip_fruitless and m.key == key and not st.pmask >> m.pm:
                if M <= m.fit and not m.moved:
                    self.n_scans_skipped += 1
                    return
                # the jobs of up to m.fit GPUs would be turned down again: only larger
                # ones, and those that moved into the window
                lo = m.fit
                if m.moved:
                    after = m.seq
                m.fit = M
                m.moved = False
            else:
                m = self._bf_state = ScanMemo(key, M)
            if not M:
                return
            self._bf_node = False
            self._bf_pm = NO_PM
            G = self._gpus
            q = self.queue
            if q.__class__ is FifoQueue:
                # the window's jobs not turned down under this reservation
                scan = self._window.get(q, key, self.window, rejected)
                if self.debug:
                    assert scan == [j for j in q.candidates(self.window) if j not in rejected], "window cache"
                m.seq = scan[-1] if scan else -1
                if after is None:
                    todo = [j for j in scan if lo < G[j] <= M]
                else:
                    todo = [j for j in scan if G[j] <= M and (G[j] > lo or j > after)]
            else:
                todo = [j for j in q.fitting(self.window, G, M, rejected) if G[j] > lo]
            # one comparison rejects a job too big for what is free now
            for j in todo:
                r = runs[j]
                if r.gpus > M:
                    continue
                if self._backfill_one(r, head, res):
                    # what is left to check fits in less: jobs above M are left for
                    # a pass that finds more free (one left the window: _dequeue)
                    M = st.max_fit()
                    m.fit = M
                    if not M:
                        break
            self._bf_settle()
            return
        for j in list(self.queue.candidates(self.window)):
            if j in rejected:
                continue
            r = runs[j]
            if r.state == QUEUED:
                self._backfill_one(r, head, res)

    def _backfill_one(self, r: Run, head: Run, res: Reservation, queued: bool = True) -> bool:
        """Start r now if it fits and does not delay the head's reservation:
        it ends before the shadow time, or it uses only what the head will
        not need then (EASY). Decided before placing where the answer does
        not depend on the nodes chosen; otherwise placed, checked, and
        undone if it would delay the head."""
        now: float = self.env._now
        g = r.gpus
        shadow = res.shadow
        # a fresh fixed-duration job runs exactly its duration, wherever it goes
        d = r.dur
        dur = d if d is not None else -1.0
        fixed = dur >= 0.0 and not (r.progress or r.pending_over or self.ckpt_cost)
        for p in r.pools:
            st = self.states[p]
            gpn = st.gpn
            if not ((st.whole_free or st.pmask >> g) if g <= gpn else st.whole_free * gpn >= g):
                continue
            constrained = p == res.pool and shadow < INF
            whole_nodes = g >= gpn
            surely_long = False
            if constrained:
                # a lower bound of the run time: fixed, or at the tightest placement
                if fixed:
                    surely_long = now + dur > shadow
                else:
                    d0 = dur if dur >= 0.0 else self.estimate(r.job, p)
                    surely_long = now + self._wall(r, d0) > shadow
                if surely_long:
                    if whole_nodes:
                        if not res.single and st.nodes_for(g) > res.extra:
                            # too long and too big; stays so while this reservation holds
                            # (time only moves on, the extra only shrinks)
                            if len(r.pools) == 1:
                                res.rejected.add(r.i)
                            continue
                    elif g in self._bad_sizes:
                        # a job of this size was just placed on a node the head needs and
                        # undone: the same best-fit choice (up to ties) would follow
                        self._bf_node = True
                        continue
                    elif not res.single and res.extra < 1 and not st.pmask >> g:
                        # no partly free node takes it: it would take a wholly free
                        # node, which the gang head needs at the shadow time (and
                        # would while no partly free node has room for g GPUs)
                        if g < self._bf_pm:
                            self._bf_pm = g
                        continue
            nodes, per, tiers = cast(Allocation, st.allocate(g, self.topology))
            if fixed:
                D = dur
                long = surely_long
            else:
                D = self._duration(r, p, nodes, tiers)
                long = constrained and now + self._wall(r, D) > shadow
            if long:
                ok = True
                if res.single:
                    if res.node in nodes:
                        ok = res.node_free - per >= head.gpus
                        if ok:
                            res.node_free -= per
                else:
                    # nodes that would be wholly free at the shadow time are the
                    # head's: taking one uses up one node of the extra. Whole
                    # nodes taken now are free now; a shared node is free then
                    # unless one of its occupants runs past the shadow time
                    if per < gpn:
                        ends = self.node_end
                        assert ends is not None          # kept under backfill
                        used = 1 if ends[p][nodes[0]] <= shadow else 0
                    else:
                        used = len(nodes)
                    ok = used <= res.extra
                    if ok:
                        res.extra -= used
                if not ok:
                    self._bf_node = True
                    st.release(nodes, per)
                    if surely_long and not whole_nodes:
                        self._bad_sizes.add(g)
                    continue
            if queued:
                self._dequeue(r, now)
            self._start(r, p, nodes, per, tiers, now, D)
            self._bad_sizes.clear()
            self.n_backfilled += 1
            return True
        return False

    # ----------------------------------------------------------- preemption
    def _victims(self, p: int, gpus: int, prio: int) -> list[int] | None:
        """Running jobs of priority < prio in pool p whose eviction lets a
        gang of `gpus` start: lowest priority first, most recent start
        first; None if evicting them all would not be enough."""
        by_prio = self.by_prio
        if not by_prio:
            return None
        lower = sorted(q for q in by_prio if q < prio and by_prio[q].items)
        if not lower:
            return None
        st = self.pools[p].state
        if sum(self.prio_alloc[q] for q in lower) + st.free_gpus < gpus:
            return None
        gpn, free, status = st.gpn, st.free, st.status
        runs = self.runs
        single = gpus <= gpn
        k = st.nodes_for(gpus)
        wf = st.whole_free
        hyp: dict[int, int] = {}
        chosen: set = set()
        whole: list[int] = []
        scanned = 0
        nj = self.node_jobs[p]
        for q in lower:
            items = by_prio[q].items
            for idx in range(len(items) - 1, -1, -1):
                j = items[idx]
                v = runs[j]
                if v.pool != p:
                    continue
                scanned += 1
                if scanned > PREEMPT_SCAN_LIMIT:
                    return None
                chosen.add(j)
                for node in v.nodes:
                    if status[node] != UP:
                        continue
                    f = hyp.get(node, free[node]) + v.per_node
                    hyp[node] = f
                    if single and f >= gpus:
                        return [x for x in nj[node] if x in chosen]
                    if not single and f == gpn:
                        wf += 1
                        whole.append(node)
                if not single and wf >= k:
                    out: list[int] = []
                    seen: set = set()
                    for node in whole[:k - st.whole_free]:
                        for x in nj[node]:
                            if x not in seen:
                                seen.add(x)
                                out.append(x)
                    return out
        return None

    def _preempt_for(self, r: Run) -> bool:
        for p in r.pools:
            victims = self._victims(p, r.gpus, r.priority)
            if victims:
                now = self.env.now
                for j in victims:
                    self._evict(self.runs[j], now)
                self._res_version += 1
                if self._try_start(r):
                    return True
        return False

    def _evict(self, v: Run, now: float) -> None:
        self._counts["preemptions"] += 1
        self._events += 1
        if v.fleet is not None:
            v.preemptions += 1
            self._end_replica(v, now)
            return
        self._interrupt(v, now, failure=False)

    def _interrupt(self, r: Run, now: float, failure: bool) -> None:
        """Stop a running job (failure or preemption) and put it back in the queue."""
        e = now - r.run_start
        interval, cost = (self.ckpt_interval, self.ckpt_cost) if r.checkpointable else (INF, 0.0)
        done, saved, last_ckpt = work_done(e, r.run_over, interval, cost)
        a = r.alloc
        D = r.run_D
        self._tiers_interrupted[r.tiers] += 1
        r.run_over = 0.0
        self._release(r, now)
        if failure:
            r.restarts += 1
            if r.checkpointable:
                if D > 0:
                    r.progress += saved / D
                r.lost_s += a * (e - last_ckpt)
            else:
                r.lost_s += a * e
                r.progress = 0.0
            r.pending_over = self.restart_delay
        else:
            r.preemptions += 1
            if r.checkpointable:
                if D > 0:
                    r.progress += done / D
                r.pending_over = self.preempt_over
            else:
                r.lost_s += a * e
                r.progress = 0.0
                r.pending_over = self.restart_delay
        r.progress = min(r.progress, 1.0)
        r.gen += 1
        r.state = QUEUED
        self.demand.change(r.dkey, now, -r.gpus, -r.gpus)     # no longer served; waits again (below)
        self._enqueue(r, now)

    # ------------------------------------------------------------- failures
    def _on_failure(self, ev) -> None:
        now = self.env.now
        rng = self.rng
        x = rng.random() * self.fail_rate
        cause = self.causes[-1]
        for c in self.causes:
            x -= c.rate_per_s
            if x < 0:
                cause = c
                break
        weights = [p.state.n * p.state.gpn for p in self.pools]
        y = rng.random() * sum(weights)
        p = len(weights) - 1
        for k, w in enumerate(weights):
            y -= w
            if y < 0:
                p = k
                break
        node = int(rng.integers(self.pools[p].state.n))
        self._fail_node(p, node, cause, now)
        self._at(rng.exponential(1.0 / self.fail_rate), self._on_failure)

    def _fail_node(self, p: int, node: int, cause, now: float) -> None:
        st = self.pools[p].state
        self._counts["failures"] += 1
        self.failure_causes[cause.name] = self.failure_causes.get(cause.name, 0) + 1
        self._events += 1
        victims = list(self.node_jobs[p][node])
        if victims:
            self._counts["failures_hitting_jobs"] += 1
        for j in victims:
            v = self.runs[j]
            if v.fleet is not None:
                v.restarts += 1
                self._end_replica(v, now)
            else:
                self._interrupt(v, now, failure=True)
        if cause.repair_s > 0 and st.status[node] != DOWN:
            was_spare = st.status[node] != UP
            st.node_down(node)
            spare = None if was_spare else st.activate_spare()
            self._at(cause.repair_s, self._on_repair, (p, node, was_spare or spare is not None))
        self._res_version += 1
        self._dirty = True
        self._schedule()

    def _on_repair(self, ev) -> None:
        p, node, as_spare = ev._value
        self.pools[p].state.node_repaired(node, as_spare)
        self._counts["repairs"] += 1
        self._events += 1
        self._res_version += 1
        self._dirty = True
        self._schedule()

    # --------------------------------------------------------------- fleets
    def _on_fleet_tick(self, ev) -> None:
        k = ev._value
        f = self.fleets[k]
        now = self.env.now
        need = f.replicas_at(now)
        f.needed = need
        live = len(f.live)
        changed = False
        if need > live:
            for _ in range(need - live):
                if not self._start_replica(f, now):
                    break
                changed = True
                self._counts["scale_ups"] += 1
        elif need < live:
            for _ in range(live - need):
                self._end_replica(self.runs[f.live[-1]], now)
                self._counts["scale_downs"] += 1
            changed = True
        f.peak_replicas = max(f.peak_replicas, len(f.live))
        self._fleet_demand(f, now)
        self._events += 1
        nxt = f.next_tick(now)       # the autoscaler's interval (fleet mode), a retry period (request mode)
        if nxt is not None and nxt < self.horizon:
            self._at(nxt - now, self._on_fleet_tick, k)
        if changed:
            self._res_version += 1
            self._dirty = True
            self._schedule()

    def _fleet_demand(self, f, now: float) -> None:
        rg = f.replica_gpus
        served = min(f.ready, f.needed)
        dt = now - f.acct_t          # replica-seconds asked for and unserved since the last change
        if dt > 0:
            f.needed_replica_s += f.acct_need * dt
            f.unmet_replica_s += f.acct_short * dt
        # every fleet shares the (inference, serving) demand key: change it by this fleet's own change
        d_dem = (f.needed - f.acct_need) * rg
        d_srv = (served - (f.acct_need - f.acct_short)) * rg
        f.acct_t, f.acct_need, f.acct_short = now, f.needed, f.needed - served
        if d_dem or d_srv:
            self.demand.change(f.dkey, now, d_dem, d_srv)

    def _start_replica(self, f, now: float) -> bool:
        p = f.pool
        st = self.pools[p].state
        rg = f.replica_gpus
        w = f.workload
        alloc = None
        if st.fits(rg):
            alloc = st.allocate(rg, self.topology)
        elif self.preemption:
            victims = self._victims(p, rg, w.priority)
            if victims:
                for j in victims:
                    self._evict(self.runs[j], now)
                if st.fits(rg):
                    alloc = st.allocate(rg, self.topology)
        if alloc is None:
            return False
        job = Job(job_id=f"{f.name}-replica-{f.replicas_started}", family="inference", kind="serving", gpus=rg,
                  submit_s=now, tenant=w.tenant, priority=w.priority, pool=self.pools[p].info.name,
                  checkpointable=False, workload=f.name, model=w.model)
        r = Run(len(self.runs), job, (p,), f.dkey, self.fam_names.index("inference"))
        r.fleet = f
        self.runs.append(r)
        f.replicas_started += 1
        nodes, per, tiers = alloc
        r.pool, r.nodes, r.per_node, r.alloc = p, nodes, per, len(nodes) * per
        r.tiers = tiers
        r.state = RUNNING
        r.submit_s = r.start_s = r.run_start = now
        r.end_at = INF
        r.gen += 1
        self._account_start(r, p, r.alloc, now)
        if self.node_end is not None and per < st.gpn:
            self.node_end[p][nodes[0]] = INF
        f.live.append(r.i)
        delay = f.scale_up_delay_s
        if delay > 0:
            self._at(delay, self._on_replica_ready, (r.i, r.gen))
        else:                        # serves at once (request mode; fleet mode with no delay)
            r.ready = True
            f.ready += 1
        self._events += 1
        return True

    def _on_replica_ready(self, ev) -> None:
        i, gen = ev._value
        r = self.runs[i]
        if r.gen != gen or r.state != RUNNING:
            return
        r.ready = True
        f = r.fleet
        f.ready += 1
        self._fleet_demand(f, self.env.now)

    def _end_replica(self, r: Run, now: float) -> None:
        f = r.fleet
        self._release(r, now)
        r.state = COMPLETED
        r.end_s = now
        r.gen += 1
        if r.ready:
            f.ready -= 1
            r.ready = False
        f.live.remove(r.i)
        self._fleet_demand(f, now)
        self._events += 1

    # -------------------------------------------------------------- samples
    def _on_sample(self, ev) -> None:
        now = self.env.now
        if now > 0:
            self.demand.flush(now - self.interval, now)
        self._sample(now)
        nxt = now + self.interval
        if nxt < self.horizon:
            self._at(self.interval, self._on_sample)
        if self.progress_fn is not None:
            wall = self.wall_s
            if wall - self._last_progress >= PROGRESS_EVERY_S:
                self._last_progress = wall
                self.progress_fn(now, self.horizon, self.events, wall)

    def _sample(self, now: float) -> None:
        in_service = 0
        down = 0
        whole = 0
        free = 0
        for pr in self.pools:
            st = pr.state
            up = st.up_nodes
            in_service += up * st.gpn
            down += st.down_nodes * st.gpn
            whole += st.whole_free * st.gpn
            free += st.free_gpus
        frag = 1.0 - whole / free if free else 0.0
        power = 0.0
        for k, pr in enumerate(self.pools):
            st = pr.state
            idle_w, extra_w = self._power[k]
            power += (st.n - st.down_nodes) * idle_w + self.pool_alloc[k] * extra_w
        self.util_rows.append((now, in_service, self.allocated, tuple(self.fam_gpus), self.queued_jobs,
                               self.queued_gpus, down, frag, power * self.pue / 1e3, tuple(self.pool_alloc)))

    def check(self) -> None:
        """Verify the engine's books against a recount (tests; debug=True
        runs it after every scheduling pass)."""
        alloc = [0] * len(self.pools)
        used: list[dict] = [dict() for _ in self.pools]
        queued = qgpus = 0
        live = {}
        for t, x in self._fa.items():
            for ev in ((x,) if x.__class__ is Run else x):
                assert ev.i not in live and ev.fin != -1, ev.i
                live[ev.i] = t
            assert x.__class__ is Run or len(x) > 1
        assert set(self._fa) <= set(self._fh)
        for r in self.runs:
            if r.state == RUNNING:
                alloc[r.pool] += r.alloc
                for node in r.nodes:
                    used[r.pool][node] = used[r.pool].get(node, 0) + r.per_node
                if r.fleet is None:
                    assert r.i in live and live[r.i] >= r.run_start, r.i
                    assert live[r.i] == r.end_at or not self._tracking, (r.i, live[r.i], r.end_at)
            elif r.state == QUEUED:
                queued += 1
                qgpus += r.gpus
        assert len(live) == sum(1 for r in self.runs if r.state == RUNNING and r.fleet is None)
        assert alloc == self.pool_alloc, (alloc, self.pool_alloc)
        assert sum(alloc) == self.allocated
        assert sum(self.fam_gpus) == self.allocated
        assert queued == self.queued_jobs == len(self.queue), (queued, self.queued_jobs, len(self.queue))
        assert qgpus == self.queued_gpus
        for k, pr in enumerate(self.pools):
            st = pr.state
            st.check()
            for node, u in used[k].items():
                assert st.status[node] == UP and u + st.free[node] == st.gpn, (node, u, st.free[node])
                assert u <= st.gpn, "over-allocated node"
            assert self.pool_alloc[k] <= st.n * st.gpn

    def _finalize(self) -> None:
        now = self.horizon
        for r in self.runs:
            if r.state == RUNNING:
                used = r.alloc * (now - r.run_start)
                r.gpu_s += used
                self.pool_gpu_s[r.pool] += used
        last = math.floor((now - 1e-9) / self.interval) * self.interval if now > 0 else 0.0
        self.demand.flush(last, now)
        if self.progress_fn is not None:
            self.progress_fn(now, self.horizon, self.events, self.wall_s)


# ------------------------------------------------------------- whole runs
@dataclass
class SimRun:
    """Everything a finished simulation hands to sim/outputs.py."""
    scenario: Any
    engine: Engine
    pools: list
    fleets: list
    request_results: list          # (workload name, RequestSimResult)
    wall_s: float
    jobs_not_submitted: int = 0
    request_fleets: list = field(default_factory=list)   # sim.fleet.RequestFleet, request_results' order


def build_pools(scenario, catalogs) -> list[PoolInfo]:
    """PoolInfo per scenario pool, its levels (nested node groups) from
    hardware.topology: the engine places jobs on the same NVLink domains,
    leaf groups, scalable units and pods the topology lays out."""
    from hardware import topology as topo_mod

    hw = catalogs.hardware
    specs = [topo_mod.PoolSpec(system=p.system, nodes=p.nodes, fabric=p.fabric.link,
                               oversubscription=p.fabric.oversubscription, name=p.name)
             for p in scenario.cluster.pools]
    topo = topo_mod.build_topology(specs, hw)
    out = []
    for k, (p, lay) in enumerate(zip(scenario.cluster.pools, topo.pools)):
        over = tuple(lay.oversubscription_to(t) for t in TIER_NAMES)
        out.append(PoolInfo(name=p.name, system=lay.system, gpu=lay.gpu, fabric=lay.fabric,
                            nodes=p.nodes - p.spare_nodes, gpus_per_node=lay.system.gpus_per_node,
                            spare_nodes=p.spare_nodes, levels=topology_levels(topo, k), oversubscription=over))
    return out


def _workload_name(w, i: int) -> str:
    try:
        from sim.generators import workload_name
        return workload_name(w, i)
    except ImportError:  # pragma: no cover - generators ship with the package
        return w.name or f"{w.family}-{i}"


def collect_work(scenario, catalogs, pools: list[PoolInfo], timer: WorkTimer, estimate) -> tuple[list, list, list]:
    """(jobs, fleets, request-mode workloads) of a scenario."""
    from sim.fleet import build_fleet
    from workloads.job_traces import load_job_trace

    jobs: list[Job] = []
    fleets = []
    request_mode = []
    pool_by_name = {p.name: p for p in pools}
    largest = max(pools, key=lambda p: p.gpus)
    horizon = scenario.duration
    for i, w in enumerate(scenario.workloads):
        name = _workload_name(w, i)
        where = f"workloads[{i}]"
        if w.family == "trace":
            loaded = load_job_trace(scenario.resolve(w.path), w.format, w.time_scale, w.limit, family="trace",
                                    tenant=w.tenant, priority=w.priority, pool=w.pool, workload=name,
                                    id_prefix=f"{name}-")
            for j in loaded:
                if j.pool is not None and j.pool not in pool_by_name:
                    from workloads.errors import unknown_name
                    raise unknown_name("pool", j.pool, pool_by_name, f"{scenario.resolve(w.path)} (job {j.job_id})")
            jobs.extend(loaded)
        elif w.family == "inference":
            if w.mode == "request":
                request_mode.append((i, name, w))
            else:
                pidx = next(k for k, p in enumerate(pools) if p.name == w.pool) if w.pool else \
                    pools.index(largest)
                pspec = scenario.cluster.pools[pidx]
                fleets.append(build_fleet(w, i, name, scenario, catalogs, pidx, pspec, horizon))
        else:
            from sim.generators import jobs_for_workload
            ctx = WorkloadContext(scenario=scenario, catalogs=catalogs, workload=w, index=i,
                                  rng=np.random.default_rng([scenario.seed, 1000 + i]), horizon_s=horizon,
                                  pools=pool_by_name, pool=pool_by_name[w.pool] if w.pool else largest,
                                  estimate_s=estimate)
            made = jobs_for_workload(w, ctx)
            from workloads.jobs import check_job
            for j in made:
                check_job(j, where)
            jobs.extend(made)
    return jobs, fleets, request_mode


def simulate(scenario, catalogs=None, progress: Callable | None = None, debug: bool = False) -> SimRun:
    """Run a validated Scenario end to end (see the module doc)."""
    from sim.scenario import check_scenario

    t0 = time.perf_counter()
    if catalogs is None:
        catalogs = check_scenario(scenario)
    pools = build_pools(scenario, catalogs)
    timer = WorkTimer(catalogs.models)
    estimate = tightest_estimator(pools, timer)

    jobs, fleets, request_mode = collect_work(scenario, catalogs, pools, timer, estimate)
    horizon = scenario.duration
    late = sum(1 for j in jobs if j.submit_s >= horizon)
    # request-mode replicas hold cluster GPUs as fixed-size fleets (sim/fleet.py), from the workload's
    # start to the end of its simulated traffic; checked to fit before anything is simulated
    from sim.fleet import build_request_fleet
    request_fleets = [build_request_fleet(w, i, name, pools, horizon) for i, name, w in request_mode]
    eng = Engine(pools, jobs, fleets + request_fleets, scheduler=scenario.scheduler, failures=scenario.failures,
                 horizon_s=horizon, sample_interval_s=scenario.outputs.sample_interval, seed=scenario.seed,
                 timer=timer, progress=progress, pue=scenario.power.pue, debug=debug)
    request_results = []
    if request_mode:
        from sim.requests import simulate_requests, spec_from_workload
        for (i, name, w), rf in zip(request_mode, request_fleets):
            spec = spec_from_workload(w, scenario, catalogs, i)
            res = simulate_requests(spec, catalogs, seed=scenario.seed * 1000003 + i)
            rf.serve_until(res, horizon)
            request_results.append((name, res))
    eng.run()
    return SimRun(scenario=scenario, engine=eng, pools=pools, fleets=fleets, request_results=request_results,
                  wall_s=time.perf_counter() - t0, jobs_not_submitted=late, request_fleets=request_fleets)
