"""Small engines for the engine, scheduler and failure tests."""
from __future__ import annotations

import numpy as np

from hardware.catalog import load_catalog
from sim.cluster import levels_for
from sim.engine import Engine, PoolInfo
from sim.scenario import FailuresSpec, SchedulerSpec
from workloads.jobs import Job


def pool(nodes: int, system: str = "dgx-h100", spares: int = 0, name: str = "p") -> PoolInfo:
    cat = load_catalog()
    s = cat.system(system)
    f = cat.fabric(s.fabric)
    return PoolInfo(name=name, system=s, gpu=cat.system_gpu(s), fabric=f, nodes=nodes, gpus_per_node=s.gpus_per_node,
                    spare_nodes=spares, levels=levels_for(cat, system, nodes + spares))


def job(i, gpus, submit, duration, **kw) -> Job:
    return Job(job_id=str(i), family=kw.pop("family", "trace"), kind=kw.pop("kind", "trace"), gpus=gpus,
               submit_s=float(submit), duration_s=float(duration), **kw)


def engine(jobs, nodes=4, policy="fifo", horizon=1e7, failures=None, preemption=False, spares=0, debug=True,
           fleets=None, pools=None, **sched) -> Engine:
    spec = SchedulerSpec(policy=policy, preemption=preemption, **sched)
    fail = FailuresSpec(**failures) if isinstance(failures, dict) else failures
    eng = Engine(pools or [pool(nodes, spares=spares)], jobs, fleets, scheduler=spec, failures=fail,
                 horizon_s=horizon, sample_interval_s=3600.0, seed=1, debug=debug)
    return eng.run()


def random_jobs(n, rng, max_gpus=16, mean_gap=300.0, mean_dur=3600.0, priorities=(0,), tenants=("a",)):
    t = np.cumsum(rng.exponential(mean_gap, n))
    sizes = rng.choice([1, 2, 4, 8, 16, 24, 32], size=n)
    sizes = np.minimum(sizes, max_gpus)
    durs = rng.exponential(mean_dur, n) + 1.0
    return [job(i, int(sizes[i]), t[i], durs[i], priority=int(rng.choice(priorities)),
                tenant=str(rng.choice(tenants))) for i in range(n)]


def by_id(eng: Engine) -> dict:
    return {r.job.job_id: r for r in eng.runs}
