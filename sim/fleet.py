"""Fleet-mode inference: months of traffic as replicas in time slices.

A fleet-mode workload (``family: inference``, the default mode) is a
request rate, not requests: ``requests_per_s`` x the diurnal profile
(workloads.traces.diurnal_multiplier, peaking in the afternoon) x monthly
growth. Every autoscaler ``interval`` the rate becomes the replicas needed
to serve it within the SLO (hardware.perf_serving.replicas_needed, mean
token counts, samples per request x search branching parallel sequences
(workloads.reasoning.parallel_sequences: a search's depth is its number of
steps, not more copies), plus verifier passes as prompt-only requests
(workloads.reasoning.verifier_work)), times ``headroom``, clamped to
[min_replicas, max_replicas]. The engine (sim/engine.py) then takes or
gives back GPUs: new replicas hold their GPUs from the decision and serve
after ``scale_up_delay``; surplus replicas (newest first) are released at
once. Each replica's life is one row of jobs.csv (family inference, kind
serving).

A request-mode workload (``mode: request``, sim/requests.py) is simulated
request by request before the engine runs; its replicas then become a
``RequestFleet``: a fixed count (``replicas``, or prefill + decode replicas
when disaggregated; both kinds share one serving config, so one size) of
``tp x pp`` GPUs on the workload's pool (else the first pool, as
sim.requests.spec_from_workload picks), asked for from the workload's
``start`` until its traffic ends (the last request's finish, or the
window's end with ``drain: false``). The engine places them like
autoscaled replicas, with no readiness delay (the request simulation
assumes them ready), and records the replica-seconds it could not hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workloads.errors import InputError
from workloads.reasoning import parallel_sequences, verifier_work
from workloads.traces import diurnal_multiplier, sample_tokens

MONTH_S = 30.4375 * 86400.0
TOKEN_MEAN_DRAWS = 20000
"""Draws used to take the mean of an empirical token distribution."""
REQUEST_FLEET_RETRY_S = 60.0
"""How often (seconds) the engine looks at a request-mode fleet while its
traffic lasts, to put back replicas it could not place or lost to a
preemption or a failure (a modelling choice: a minute is short next to the
traffic windows request mode is for, and costs one event per minute)."""


def mean_tokens(dist, where: str, base_dir=None, role: str = "input") -> float:
    """Mean token count of a scenario TokenDist."""
    if dist.distribution == "empirical":
        rng = np.random.default_rng(0)
        return float(sample_tokens(dist, TOKEN_MEAN_DRAWS, rng, where, base_dir=base_dir, role=role).mean())
    return float(dist.mean)


@dataclass(kw_only=True)
class ReplicaBooks:
    """What the engine keeps about a fleet's replicas while it runs (both
    kinds of fleet): live replica run indexes, how many serve, how many are
    asked for, counts, and the replica-seconds asked for and not served
    (accounted since the last change, Engine._fleet_demand)."""
    live: list = field(default_factory=list)
    ready: int = 0
    needed: int = 0
    replicas_started: int = 0
    peak_replicas: int = 0
    unmet_replica_s: float = 0.0
    needed_replica_s: float = 0.0
    acct_t: float = 0.0
    acct_need: int = 0
    acct_short: int = 0


@dataclass
class Fleet(ReplicaBooks):
    """One fleet-mode inference workload, ready for the engine."""
    index: int
    name: str
    workload: Any
    pool: int                      # engine pool index
    replica_gpus: int
    cfg: Any                       # hardware.perf_serving.ServingConfig
    input_tokens: float
    output_tokens: float
    samples: int
    start_s: float
    end_s: float
    _cache: dict = field(default_factory=dict)

    @property
    def spec(self):
        return self.workload.autoscaler

    @property
    def scale_up_delay_s(self) -> float:
        """Seconds from placing a replica to its serving."""
        return float(self.workload.autoscaler.scale_up_delay)

    def next_tick(self, now: float) -> float | None:
        """Time of the autoscaler decision after `now` (None: no more)."""
        if now >= self.end_s:
            return None
        return min(now + self.workload.autoscaler.interval, self.end_s)

    def rate(self, t: float) -> float:
        w = self.workload
        growth = w.growth.requests_per_month ** (t / MONTH_S)
        return float(w.requests_per_s) * float(diurnal_multiplier(t, w.diurnal)) * growth

    def replicas_at(self, t: float) -> int:
        """Replicas the autoscaler asks for at time t."""
        from hardware import perf_serving as ps

        w = self.workload
        a = w.autoscaler
        if t < self.start_s or t >= self.end_s:
            return 0
        rate = self.rate(t) * a.headroom
        out_tokens = max(1, int(round(self.output_tokens * w.growth.tokens_per_month ** (t / MONTH_S))))
        in_tokens = max(1, int(round(self.input_tokens)))
        key = (out_tokens, in_tokens)
        per = self._cache.get(key)
        if per is None:
            est = ps.estimate(self.cfg, in_tokens, out_tokens, w.slo.ttft, w.slo.tpot, self.samples)
            passes, vtok = verifier_work(in_tokens, out_tokens, w.samples_per_request, w.search, w.verifier_passes)
            verify = None
            if passes:
                verify = ps.estimate(self.cfg, max(1, round(vtok)), 1, w.slo.ttft, None, 1)
            per = self._cache[key] = (est.requests_per_s, verify.requests_per_s if verify else None, passes)
        need = rate / per[0]
        if per[1]:
            need += rate * per[2] / per[1]
        n = math.ceil(need - 1e-9) if rate > 0 else 0
        n = max(n, a.min_replicas)
        if a.max_replicas is not None:
            n = min(n, a.max_replicas)
        return n


def build_fleet(workload, index: int, name: str, scenario, catalogs, pool_index: int, pool_spec,
                horizon_s: float) -> Fleet:
    """A Fleet for a fleet-mode inference workload; InputError when the
    model does not fit the replica or the SLO cannot be met."""
    from hardware import perf_serving as ps

    where = f"workloads[{index}]"
    hw = catalogs.hardware
    system = hw.system(pool_spec.system)
    gpu = hw.system_gpu(system)
    fabric = hw.fabric(pool_spec.fabric.link or system.fabric)
    model = catalogs.models.get(workload.model, f"{where}.model")
    if workload.requests_per_s is None:
        raise InputError("a fleet-mode inference workload needs 'requests_per_s'", f"{where}.requests_per_s",
                         "give a mean request rate (a trace drives mode: request)")
    try:
        cfg = ps.ServingConfig(model=model, gpu=gpu, system=system, fabric=fabric, tp=workload.tp, pp=workload.pp,
                               ep=workload.ep, precision=workload.precision, max_batch=workload.max_batch,
                               max_num_tokens=workload.max_num_tokens)
    except InputError as exc:
        raise InputError(exc.what, f"{where} ({exc.where})" if exc.where else where, exc.fix) from None
    in_service = (pool_spec.nodes - pool_spec.spare_nodes) * system.gpus_per_node
    if ps.replica_gpus(cfg) > in_service:
        raise InputError(f"a replica needs {ps.replica_gpus(cfg)} GPUs but pool {pool_spec.name!r} has {in_service}",
                         f"{where}.tp", "use a smaller tp/pp or a bigger pool")
    samples = parallel_sequences(workload.samples_per_request, workload.search)
    base_dir = getattr(scenario, "base_dir", None)
    fleet = Fleet(index=index, name=name, workload=workload, pool=pool_index, replica_gpus=ps.replica_gpus(cfg),
                  cfg=cfg,
                  input_tokens=mean_tokens(workload.input_tokens, f"{where}.input_tokens", base_dir, "input"),
                  output_tokens=mean_tokens(workload.output_tokens, f"{where}.output_tokens", base_dir, "output"),
                  samples=samples, start_s=workload.start,
                  end_s=min(horizon_s, workload.end) if workload.end is not None else horizon_s)
    try:
        fleet.replicas_at(fleet.start_s)   # surface memory / SLO errors before the run
    except InputError as exc:
        raise InputError(exc.what, where, exc.fix) from None
    return fleet


def replica_seconds(fleet, until: float) -> tuple[float, float]:
    """(replica-seconds asked for, replica-seconds not served) of a fleet
    from its start to `until` (the engine's books closed at `until`)."""
    dt = max(0.0, until - fleet.acct_t)
    return fleet.needed_replica_s + fleet.acct_need * dt, fleet.unmet_replica_s + fleet.acct_short * dt


# ------------------------------------------------------------ request mode
def request_replicas(workload) -> int:
    """Replicas a request-mode workload simulates: `replicas`, or prefill +
    decode replicas when disaggregated."""
    dis = workload.disaggregated
    return dis.prefill_replicas + dis.decode_replicas if dis else workload.replicas


def request_pool(workload, pools) -> int:
    """Engine pool index of a request-mode workload: its `pool`, else the
    first pool (the pool sim.requests.spec_from_workload takes the system
    and fabric from)."""
    if workload.pool:
        for k, p in enumerate(pools):
            if p.name == workload.pool:
                return k
        from workloads.errors import unknown_name
        raise unknown_name("pool", workload.pool, [p.name for p in pools], "workload pool")
    return 0


def replicas_that_fit(replica_gpus: int, nodes: int, gpus_per_node: int) -> int:
    """How many replicas of `replica_gpus` GPUs an empty pool holds (the
    engine places one within a node, or on whole nodes above one node)."""
    if replica_gpus <= gpus_per_node:
        return (gpus_per_node // replica_gpus) * nodes
    return nodes // -(-replica_gpus // gpus_per_node)


@dataclass
class RequestFleet(ReplicaBooks):
    """The replicas of one request-mode inference workload, ready for the
    engine: `replicas` replicas of `replica_gpus` GPUs from start_s to
    end_s (see the module doc). Same interface as Fleet for the engine."""
    index: int
    name: str
    workload: Any
    pool: int                      # engine pool index
    replica_gpus: int
    replicas: int
    start_s: float
    end_s: float                   # set from the request simulation (serve_until)
    cfg: Any = None                # hardware.perf_serving.ServingConfig of the request simulation

    scale_up_delay_s = 0.0         # the request simulation assumes every replica ready

    def replicas_at(self, t: float) -> int:
        return self.replicas if self.start_s <= t < self.end_s else 0

    def next_tick(self, now: float) -> float | None:
        if now >= self.end_s:
            return None
        return min(now + REQUEST_FLEET_RETRY_S, self.end_s)

    def serve_until(self, result, horizon_s: float) -> None:
        """Set the end from a finished request simulation (a
        sim.requests.RequestSimResult): the workload's start plus the
        simulation's clock at its end (the last request's finish, or the
        window's end without drain), clipped to the scenario's horizon."""
        from hardware.perf_serving import replica_gpus

        self.cfg = result.config
        if replica_gpus(result.config) != self.replica_gpus:   # pragma: no cover - both are tp x pp
            raise AssertionError("request simulation and fleet disagree on the replica size")
        self.end_s = min(float(horizon_s), self.start_s + float(result.summary["simulated_s"]))


def build_request_fleet(workload, index: int, name: str, pools, horizon_s: float) -> RequestFleet:
    """A RequestFleet for a request-mode workload on engine pools `pools`
    (sim.engine.PoolInfo list); InputError naming the workload's replicas
    when the pool cannot hold them all. Its end is set after the request
    simulation (RequestFleet.serve_until)."""
    where = f"workloads[{index}]"
    p = request_pool(workload, pools)
    info = pools[p]
    rg = int(workload.tp) * int(workload.pp)      # hardware.perf_serving.replica_gpus
    n = request_replicas(workload)
    cap = replicas_that_fit(rg, info.nodes, info.gpus_per_node)
    if n > cap:
        field_ = f"{where}.disaggregated" if workload.disaggregated else f"{where}.replicas"
        raise InputError(f"{n} replicas of {rg} GPUs need {n * rg} GPUs but pool {info.name!r} "
                         f"({info.nodes * info.gpus_per_node} GPUs in service) holds at most {cap} of them",
                         field_, f"use at most {cap} replicas, a smaller tp/pp, or a bigger pool")
    start = float(workload.start)
    return RequestFleet(index=index, name=name, workload=workload, pool=p, replica_gpus=rg, replicas=n,
                        start_s=start, end_s=start)
