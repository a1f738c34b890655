"""Jobs: what a cluster is asked to run, as plain data the engine schedules.

Contract (shared by the trace loaders, sim/generators.py and sim/engine.py):

* A ``Job`` is immutable input: who asks (tenant, priority), for how many
  GPUs, from when (``submit_s``, seconds from the start of the simulation),
  and how much work. Everything that happens to it at run time (start, end,
  restarts, preemptions, progress, lost work) is engine state, never written
  back into the Job.
* The amount of work is given in exactly one of three ways:

  1. ``duration_s``: a fixed runtime in seconds on any placement (traces;
     durations are taken as given).
  2. ``work``: a ``TrainingWork`` or ``GenerationWork``, or a tuple of them
     run one after the other (phases, e.g. rollouts then training). The
     engine turns work into seconds with hardware/perf_training.py and
     hardware/perf_serving.py for the job's actual placement (a job spread
     over more network tiers runs slower), caching by (work, GPUs, system,
     tiers) so a million jobs do not each call the models.
  3. ``duration_fn``: a callable ``f(placement) -> seconds`` taking a
     sim.placement.Placement (pool, system, gpus, nodes, tiers_spanned).
     Use it for work the two types above cannot express; keep it cheap or
     cache inside it.

* ``gpus`` is the gang size: the job starts with all of them or waits. A
  job larger than one node gets whole nodes (rounded up).
* ``after`` names job_ids that must finish first (post-training after its
  base model's pretraining); the job is submitted at the later of
  ``submit_s`` and the last of those finishes.
* ``cancel_s``: the owner withdraws the job if it has not started by then
  (state ``cancelled``). ``deadline_s`` is informational (reported).
* ``checkpointable`` jobs resume from their last checkpoint after a failure
  or preemption; others restart from the beginning.
* ``family`` is one of pretraining, post_training, inference, trace (or a
  trace's own family column); ``kind`` refines it (pretrain, sft, lora,
  distillation, rl, best_of_n, synthetic_data, search, serving, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

FAMILIES = ("pretraining", "post_training", "inference", "trace")


@dataclass(frozen=True)
class TrainingWork:
    """Training over `tokens` tokens of `model` (a catalog name or a
    workloads.models.ModelSpec). `options` are extra keyword arguments for
    hardware.perf_training.estimate_training (e.g. (("lora_rank", 16),)),
    kept as a tuple of pairs so the work stays hashable for caching."""
    model: Any
    tokens: float
    seq_len: int = 8192
    global_batch_tokens: Optional[float] = None
    precision: str = "bf16"
    options: tuple = ()


@dataclass(frozen=True)
class GenerationWork:
    """Offline generation inside a job (RL rollouts, teacher outputs for
    distillation, best-of-n samples, synthetic data): `sequences` prompts of
    `input_tokens` each answered with `output_tokens`, on all the job's GPUs
    as data-parallel replicas of `tp` GPUs each (None: the serving model's
    choice)."""
    model: Any
    sequences: float
    input_tokens: float
    output_tokens: float
    precision: str = "fp8"
    tp: Optional[int] = None
    options: tuple = ()


Work = Union[TrainingWork, GenerationWork, tuple]


@dataclass(eq=False, slots=True)
class Job:
    """One job: see the module docstring for the contract."""
    job_id: str
    family: str
    kind: str
    gpus: int
    submit_s: float
    duration_s: Optional[float] = None
    work: Optional[Work] = None
    duration_fn: Optional[Callable[[Any], float]] = None
    tenant: str = "default"
    priority: int = 0
    pool: Optional[str] = None
    checkpointable: bool = True
    deadline_s: Optional[float] = None
    cancel_s: Optional[float] = None
    after: tuple = ()
    workload: Optional[str] = None
    model: Optional[str] = None
    meta: Optional[dict] = None

    def phases(self) -> tuple:
        """The work as a tuple of phases (empty for fixed-duration jobs)."""
        if self.work is None:
            return ()
        return self.work if isinstance(self.work, tuple) else (self.work,)


def check_job(job: Job, where: str = "job") -> None:
    """Raise InputError if a job is not well formed (used by loaders and
    generators before the run starts)."""
    from workloads.errors import InputError

    if not isinstance(job.gpus, int) or job.gpus <= 0:
        raise InputError(f"job {job.job_id!r} asks for {job.gpus!r} GPUs", where, "ask for 1 or more GPUs")
    if not job.submit_s >= 0:
        raise InputError(f"job {job.job_id!r} has submit time {job.submit_s!r}", where, "use a time >= 0")
    given = sum(x is not None for x in (job.duration_s, job.work, job.duration_fn))
    if given != 1:
        raise InputError(f"job {job.job_id!r} gives {given} of duration_s, work, duration_fn", where,
                         "give exactly one")
    if job.duration_s is not None and not job.duration_s >= 0:
        raise InputError(f"job {job.job_id!r} has duration {job.duration_s!r}", where, "use a duration >= 0")
