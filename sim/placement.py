"""Where a job runs, and how long its work takes there.

``Placement`` is what a job's duration depends on: the pool (system, GPU,
fabric), how many GPUs and nodes, and how many switch tiers the gang spans
(0 = inside one node or NVLink domain, 1 = one leaf, 2 = spine, 3 = core).
The engine builds one only for jobs whose duration depends on it.

``WorkTimer`` turns a job's work (workloads.jobs TrainingWork /
GenerationWork phases, or a duration_fn) into seconds for a placement with
hardware.perf_training and hardware.perf_serving, caching by (work, GPUs,
system, tiers) so that a million jobs cost a few thousand model calls.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Optional

from workloads.errors import InputError
from workloads.jobs import GenerationWork, Job, TrainingWork


@dataclass(frozen=True)
class Placement:
    pool: str
    system: Any                      # hardware.catalog.System
    gpu: Any                         # hardware.catalog.GPU
    fabric: Any                      # hardware.catalog.Fabric
    gpus: int
    nodes: tuple
    tiers_spanned: int
    oversubscription: float = 1.0    # of the tiers above the leaf

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True)
class PoolHardware:
    """The catalog entries of a pool, for duration models."""
    name: str
    system: Any
    gpu: Any
    fabric: Any
    oversubscription: float = 1.0
    tier_ratios: Optional[dict] = None


class WorkTimer:
    """Seconds of a job's work on a placement, cached."""

    def __init__(self, models=None):
        self.models = models            # workloads.models.ModelCatalog
        self.cache: dict = {}
        self.calls = 0

    def _model(self, model):
        if isinstance(model, str):
            if self.models is None:
                raise InputError(f"no model catalog to look up {model!r}", "job work", "pass catalogs")
            return self.models.get(model, "job work model")
        return model

    def seconds(self, job: Job, place: Placement) -> float:
        if job.duration_s is not None:
            return float(job.duration_s)
        if job.duration_fn is not None:
            return float(job.duration_fn(place))
        total = 0.0
        for phase in job.phases():
            key = (phase, job.gpus, place.pool, place.tiers_spanned)
            t = self.cache.get(key)
            if t is None:
                self.calls += 1
                if isinstance(phase, TrainingWork):
                    t = self._training(phase, job.gpus, place)
                elif isinstance(phase, GenerationWork):
                    t = self._generation(phase, job.gpus, place)
                else:
                    raise InputError(f"job {job.job_id!r} has work of unknown type {type(phase).__name__}",
                                     "job work", "use TrainingWork or GenerationWork")
                self.cache[key] = t
            total += t
        return total

    # ---------------------------------------------------------- training
    def _training(self, w: TrainingWork, gpus: int, place: Placement) -> float:
        from hardware import perf_training

        # the engine caches by (work, GPUs, pool, tiers) itself; call the
        # uncached function (catalog entries with dict fields do not hash)
        fn = getattr(perf_training.estimate_training, "__wrapped__", perf_training.estimate_training)
        kwargs = dict(model=self._model(w.model), gpu=place.gpu, system=place.system, fabric=place.fabric,
                      gpus=gpus, seq_len=w.seq_len, global_batch_tokens=w.global_batch_tokens,
                      precision=w.precision, oversubscription=place.oversubscription,
                      tiers_spanned=place.tiers_spanned)
        kwargs.update(dict(w.options))
        params = _params(fn)
        if params is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        est = fn(**kwargs)
        tps = float(getattr(est, "tokens_per_s"))
        if not tps > 0:
            raise InputError(f"the training model gives {tps} tokens/s for {gpus} GPUs", "job work",
                             "check the job's model and size")
        return w.tokens / tps

    # --------------------------------------------------------- generation
    def _generation(self, w: GenerationWork, gpus: int, place: Placement) -> float:
        from hardware import perf_serving as ps

        model = self._model(w.model)
        tps = [w.tp] if w.tp else [t for t in (1, 2, 4, 8, 16, 32, 64, 72)
                                   if t <= min(gpus, place.system.nvlink_domain_gpus)]
        last_error = None
        for tp in tps:
            try:
                cfg = ps.ServingConfig(model=model, gpu=place.gpu, system=place.system, fabric=place.fabric,
                                       tp=tp, precision=w.precision, **dict(w.options))
                est = ps.estimate(cfg, max(1, int(w.input_tokens)), max(1, int(w.output_tokens)))
            except InputError as exc:
                last_error = exc
                continue
            replicas = max(1, gpus // tp)
            return w.sequences / (est.requests_per_s * replicas)
        raise InputError(f"model {getattr(model, 'name', model)!r} cannot generate on {gpus} GPUs of "
                         f"{place.system.name}: {last_error.what if last_error else 'no layout fits'}",
                         "job work", "give the job more GPUs")


def _params(fn) -> Optional[set]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)


def ideal_tiers(pool_state, gpus: int) -> int:
    """Tiers a job of `gpus` spans when packed as tightly as the pool allows."""
    k = pool_state.nodes_for(gpus)
    if k == 1:
        return 0
    for level in pool_state.levels:
        if k <= level.nodes:
            return level.tier
    return pool_state.levels[-1].tier


def tightest_estimator(pools: list, timer, force=None):
    """estimate(job): a job's seconds at the tightest placement of its pool
    (the largest without one; `force`: that pool) on empty pools (PoolInfo
    list), as generators and the demand estimates see it."""
    from sim.cluster import PoolState

    states = {p.name: PoolState(k, p.name, p.gpus_per_node, p.nodes, 0, p.levels) for k, p in enumerate(pools)}
    by_name = {p.name: p for p in pools}
    largest = max(pools, key=lambda p: p.gpus)

    def estimate(job) -> float:
        if job.duration_s is not None:
            return float(job.duration_s)
        info = force or (by_name[job.pool] if job.pool else largest)
        st = states[info.name]
        tiers = ideal_tiers(st, job.gpus)
        place = Placement(pool=info.name, system=info.system, gpu=info.gpu, fabric=info.fabric, gpus=job.gpus,
                          nodes=tuple(range(st.nodes_for(job.gpus))), tiers_spanned=tiers,
                          oversubscription=info.oversubscription[tiers])
        return timer.seconds(job, place)

    return estimate


def oversubscription_for(tier_ratios: dict | None, tiers: int) -> float:
    """Bandwidth taper a placement sees: none inside a leaf, the leaf
    uplinks' ratio across the spine, the worst of leaf and spine across the
    core."""
    if not tier_ratios or tiers <= 1:
        return 1.0
    if tiers == 2:
        return float(tier_ratios.get("leaf", 1.0))
    return float(max(tier_ratios.get("leaf", 1.0), tier_ratios.get("spine", 1.0)))
