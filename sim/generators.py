"""Turn pretraining and post-training workloads of a scenario into engine
Jobs: one run or a roadmap of runs sized by the scaling laws; a derivative
ecosystem of post-training jobs (one kind or a mix) arriving over a window
by a Poisson, burst or growing process, optionally spawned by a base
model's release (``after_pretraining``).

The engine calls ``jobs_for_workload(workload, ctx)`` once per workload with
a sim.engine.WorkloadContext. Jobs carry their work (TrainingWork /
GenerationWork phases, see workloads/jobs.py) and, in ``meta``, the FLOPs
they stand for (``flops``) so that demand can be accounted per law in FLOPs
as well as in GPU-hours.

Job ids are stable: ``<workload>`` for one pretraining run, ``<workload>-<k>``
for the k-th run of a roadmap, ``<workload>-<kind>-<j>`` for derivatives
(``<workload>-r<k>-<kind>-<j>`` when spawned by the k-th run of a roadmap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from workloads.errors import InputError, close_matches
from workloads.jobs import GenerationWork, Job, TrainingWork
from workloads.models import ModelSpec
from workloads import post_training as pt
from workloads import scaling_laws as sl

YEAR_S = 365.25 * 86400.0
MONTH_S = YEAR_S / 12.0

FINETUNE_BATCH_TOKENS = 2 ** 20
"""Global batch of post-training steps: 1M tokens (typical SFT/RL recipes use
0.5-2M-token batches; hardware.perf_training.estimate_finetune's default)."""

SCORE_OUTPUT_TOKENS = 1
"""A reward model reads prompt + answer and emits one score: generation
work with a single output token (prefill-bound)."""


# --------------------------------------------------------------- naming
def workload_name(workload, index: int) -> str:
    """The name jobs and reports use for a workload: its `name`, else
    family-index (pretraining with a model: the model's name)."""
    if getattr(workload, "name", None):
        return workload.name
    if workload.family == "pretraining" and workload.model and workload.roadmap is None:
        return f"pretrain-{workload.model}-{index}"
    return f"{workload.family}-{index}"


# --------------------------------------------------------- pretraining
@dataclass(frozen=True)
class PretrainingRun:
    """One planned pretraining run before it becomes a Job."""
    job_id: str
    model: ModelSpec
    params: float
    tokens: float
    compute: float
    submit_s: float
    deadline_s: Optional[float]


def pretraining_runs(workload, index: int, models, horizon_s: float) -> list[PretrainingRun]:
    """The runs of a pretraining workload: one, or a roadmap's series.

    One run: a catalog `model` with `tokens` (or tokens from `compute`), or
    `params` with `tokens`, or `compute` alone (compute-optimal sizes by
    `rule`/`fit`). A roadmap starts at `start_compute` at `submit` and
    releases a model every `every`, each run's compute growing
    `growth_per_year`-fold per year; sizes follow `rule`; runs go on until
    `count` or the end of the simulation; each must finish before the next
    starts (deadline)."""
    name = workload_name(workload, index)
    where = f"workloads[{index}]"
    if workload.roadmap is not None:
        rm = workload.roadmap
        if rm.every <= 0:
            raise InputError("roadmap.every must be longer than zero", f"{where}.roadmap.every", "give e.g. 6mo")
        runs = []
        k = 0
        while True:
            submit = workload.submit + k * rm.every
            if rm.count is not None and k >= rm.count:
                break
            if rm.count is None and submit >= horizon_s:
                break
            compute = rm.start_compute * rm.growth_per_year ** (k * rm.every / YEAR_S)
            n, d = sl.compute_optimal(compute, rm.rule, rm.fit)
            model = sl.model_for_params(n, f"{name}-{k}", workload.seq_len)
            runs.append(PretrainingRun(f"{name}-{k}", model, n, d, sl.training_flops(n, d), submit,
                                       submit + rm.every))
            k += 1
            if k > 10000:
                raise InputError("the roadmap makes more than 10,000 runs", f"{where}.roadmap",
                                 "use a longer 'every' or a 'count'")
        return runs
    if workload.model is not None:
        model = models.get(workload.model, f"{where}.model")
        n = model.params_total
        if workload.tokens is not None:
            d = workload.tokens
        else:
            d = workload.compute / (sl.TRAIN_FLOPS_PER_PARAM_TOKEN * n)
    else:
        solved = sl.solve(compute=workload.compute, params=workload.params, tokens=workload.tokens,
                          rule=workload.rule, fit=workload.fit)
        n, d = solved["params"], solved["tokens"]
        model = sl.model_for_params(n, name, workload.seq_len)
    return [PretrainingRun(name, model, n, d, sl.training_flops(n, d), workload.submit, workload.deadline)]


def _check_runs(job: Job, ctx, where: str) -> None:
    """Surface a job that cannot run (does not fit in memory, no layout) at
    generation time, naming the workload, instead of mid-simulation."""
    if ctx.estimate_s is None:
        return
    try:
        ctx.estimate_s(job)
    except InputError as exc:
        raise InputError(exc.what, f"{where} ({job.kind}, {job.gpus} GPUs)", exc.fix) from None


def _pretraining_jobs(workload, ctx) -> list[Job]:
    runs = pretraining_runs(workload, ctx.index, ctx.catalogs.models, ctx.horizon_s)
    wname = workload_name(workload, ctx.index)
    jobs = []
    for run in runs:
        work = TrainingWork(model=run.model, tokens=run.tokens, seq_len=workload.seq_len,
                            global_batch_tokens=workload.global_batch_tokens, precision=workload.precision)
        jobs.append(Job(job_id=run.job_id, family="pretraining", kind="pretrain", gpus=workload.gpus,
                        submit_s=run.submit_s, work=work, tenant=workload.tenant, priority=workload.priority,
                        pool=workload.pool, checkpointable=True, deadline_s=run.deadline_s, workload=wname,
                        model=run.model.name,
                        meta={"flops": sl.training_flops_full(run.model, run.tokens, workload.seq_len),
                              "flops_6nd": run.compute, "params": run.params, "tokens": run.tokens}))
    if jobs:
        _check_runs(jobs[-1], ctx, f"workloads[{ctx.index}]")
    return jobs


# ------------------------------------------------------- post-training
def kind_counts(workload) -> dict[str, int]:
    """How many of the `count` derivatives are of each kind: all of `kind`,
    or the `mix` shares apportioned by largest remainder (exact total,
    deterministic, proportional to count)."""
    if workload.kind is not None:
        return {workload.kind: workload.count}
    total = sum(workload.mix.values())
    exact = {k: workload.count * v / total for k, v in workload.mix.items()}
    counts = {k: int(math.floor(x)) for k, x in exact.items()}
    left = workload.count - sum(counts.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), list(exact).index(k)))[:left]:
        counts[k] += 1
    return {k: c for k, c in counts.items() if c > 0}


def arrival_times(process: str, count: int, start: float, end: float, rng, growth: float = 2.0) -> np.ndarray:
    """`count` sorted arrival times in [start, end].

    poisson: a homogeneous Poisson process conditioned on `count` arrivals
    (uniform order statistics); burst: all at `start`; growth: the rate
    grows `growth`-fold per month (inverse-CDF draws from an exponential
    intensity)."""
    if count <= 0:
        return np.zeros(0)
    if process == "burst" or end <= start:
        return np.full(count, float(start))
    u = np.sort(rng.random(count))
    if process == "poisson":
        return start + u * (end - start)
    if process == "growth":
        k = math.log(growth) / MONTH_S
        span = end - start
        if abs(k * span) < 1e-9:
            return start + u * span
        # intensity ~ exp(k t): F(t) = (exp(k t) - 1) / (exp(k span) - 1)
        return start + np.log1p(u * math.expm1(k * span)) / k
    raise InputError(f"unknown arrival process {process!r}", "arrival.process", "use poisson, burst or growth")


def _phase_work(phase: pt.Phase, lora_rank: int, train_precision: str) -> tuple:
    """The engine work items for one phase."""
    if phase.action == "train":
        options = (("kind", "lora"), ("lora_rank", lora_rank)) if phase.method == "lora" else (("kind", "sft"),)
        return (TrainingWork(model=phase.model, tokens=phase.tokens, seq_len=phase.seq_len,
                             global_batch_tokens=max(phase.seq_len, FINETUNE_BATCH_TOKENS),
                             precision=train_precision, options=options),)
    if phase.action == "generate":
        return (GenerationWork(model=phase.model, sequences=phase.samples, input_tokens=phase.prompt_tokens,
                               output_tokens=phase.response_tokens),)
    # score: a reward model reads prompt + answer and emits one score
    return (GenerationWork(model=phase.model, sequences=phase.samples, input_tokens=phase.read_tokens,
                           output_tokens=SCORE_OUTPUT_TOKENS),)


def derivative_phases(workload, kind: str, base: ModelSpec, models, where: str,
                      released: Optional[ModelSpec] = None) -> list[pt.Phase]:
    """The phases of one derivative. `released`: the model a pretraining run
    released; it teaches when the workload names a base_model of its own
    and no teacher_model."""
    teacher = models.get(workload.teacher_model, f"{where}.teacher_model") if workload.teacher_model else None
    if teacher is None and released is not None and released is not base:
        teacher = released
    reward = models.get(workload.reward_model, f"{where}.reward_model") if workload.reward_model else None
    return pt.phases(kind, base, workload.tokens, teacher=teacher, reward=reward, samples=workload.samples,
                     rollout_ratio=workload.rollout_ratio, lora_rank=workload.lora_rank, seq_len=workload.seq_len,
                     prompt_tokens=workload.prompt_tokens, response_tokens=workload.response_tokens)


def _find_pretraining(scenario, name: str, where: str) -> tuple[int, object]:
    found = []
    for i, w in enumerate(scenario.workloads):
        if w.family == "pretraining" and workload_name(w, i) == name:
            found.append((i, w))
    if not found:
        names = [workload_name(w, i) for i, w in enumerate(scenario.workloads) if w.family == "pretraining"]
        near = close_matches(name, names, n=1)
        fix = f"did you mean {near[0]!r}?" if near else (
            "name one of: " + ", ".join(names) if names else "add a pretraining workload with that 'name'")
        raise InputError(f"no pretraining workload named {name!r}", f"{where}.after_pretraining", fix)
    return found[0]


def _post_training_jobs(workload, ctx) -> list[Job]:
    where = f"workloads[{ctx.index}]"
    models = ctx.catalogs.models
    wname = workload_name(workload, ctx.index)
    counts = kind_counts(workload)
    end_default = ctx.horizon_s
    # releases: (label, base model, released model, release time estimate, dependency job id)
    releases: list[tuple[str, ModelSpec, Optional[ModelSpec], float, Optional[str]]] = []
    if workload.after_pretraining:
        pi, pw = _find_pretraining(ctx.scenario, workload.after_pretraining, where)
        runs = pretraining_runs(pw, pi, models, ctx.horizon_s)
        for k, run in enumerate(runs):
            release = run.submit_s
            if ctx.estimate_s is not None:
                probe = Job(job_id=run.job_id, family="pretraining", kind="pretrain", gpus=pw.gpus,
                            submit_s=run.submit_s, pool=pw.pool,
                            work=TrainingWork(model=run.model, tokens=run.tokens, seq_len=pw.seq_len,
                                              global_batch_tokens=pw.global_batch_tokens, precision=pw.precision))
                release += ctx.estimate_s(probe)
            base = models.get(workload.base_model, f"{where}.base_model") if workload.base_model else run.model
            label = f"{wname}-r{k}" if len(runs) > 1 else wname
            releases.append((label, base, run.model, release, run.job_id))
    else:
        releases.append((wname, models.get(workload.base_model, f"{where}.base_model"), None, 0.0, None))

    if workload.arrival.end is not None and workload.arrival.end < workload.arrival.start:
        raise InputError(f"the arrival window ends ({workload.arrival.end:g} s) before it starts "
                         f"({workload.arrival.start:g} s)", f"{where}.arrival", "give end >= start")
    jobs = []
    for label, base, released, release, dep in releases:
        start = release + workload.arrival.start
        end = release + workload.arrival.end if workload.arrival.end is not None else end_default
        for kind, n in counts.items():
            steps = derivative_phases(workload, kind, base, models, where, released)
            work = tuple(w for s in steps for w in _phase_work(s, workload.lora_rank, workload.precision))
            flops = pt.total_flops(steps)
            times = arrival_times(workload.arrival.process, n, start, max(start, end), ctx.rng,
                                  workload.arrival.growth)
            _check_runs(Job(job_id=f"{label}-{kind}", family="post_training", kind=kind, gpus=workload.gpus,
                            submit_s=0.0, work=work, pool=workload.pool), ctx, where)
            for j, t in enumerate(times):
                jobs.append(Job(job_id=f"{label}-{kind}-{j}", family="post_training", kind=kind, gpus=workload.gpus,
                                submit_s=float(t), work=work, tenant=workload.tenant, priority=workload.priority,
                                pool=workload.pool, checkpointable=kind in ("sft", "lora", "distillation", "rl"),
                                after=(dep,) if dep else (), workload=wname, model=base.name,
                                meta={"flops": flops, "base": base.name,
                                      "phases": [s.name for s in steps]}))
    jobs.sort(key=lambda j: (j.submit_s, j.job_id))
    return jobs


def jobs_for_workload(workload, ctx) -> list[Job]:
    """The Jobs of one pretraining or post-training workload (see module doc)."""
    if workload.family == "pretraining":
        return _pretraining_jobs(workload, ctx)
    if workload.family == "post_training":
        return _post_training_jobs(workload, ctx)
    raise InputError(f"sim.generators makes no jobs for family {workload.family!r}", "family",
                     "only pretraining and post_training workloads are generated here")
