"""Engine benchmark: a synthetic year of jobs on a large H100 cluster under
backfill, next to a bare SimPy loop doing only the submit and finish
timeouts of the same jobs.

    python benchmarks/bench_engine.py --load 0.9            # 1,000,000 jobs, 12,500 DGX H100 (100,000 GPUs)
    python benchmarks/bench_engine.py --jobs 100000 --days 36.525 --repeat 3   # the same dynamics, 1/10 of it
    python benchmarks/bench_engine.py --jobs 100000 --nodes 1250               # a 10x smaller cluster

Jobs: Poisson arrivals over the period; sizes 1 to 4,096 GPUs, powers of two
with P(2^i) proportional to 2^(-i/2) (mean ~64 GPUs, 0.5% of jobs at 4,096);
durations lognormal (sigma 1.5, capped at 14 days) scaled so that the
offered load is --load of the cluster. The pool is laid out by
hardware/topology.py (leaf groups of 32 nodes, spine pods of 128). Each mode
runs in its own process so that its peak memory (max RSS) is its own; only
the run itself is timed (building the jobs and the engine is reported
apart). On a shared machine use --repeat: the fastest of the runs counts.

The engine runs as installed: compiled with mypyc (``pip install .``, see
setup.py) or pure Python (GPUSIM_PURE_PYTHON=1, or a build without a C
compiler); the output says which. --pure adds a run of the pure Python
engine next to the compiled one.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import sim  # noqa: F401  (the installed package: compiled where it was built so)
except ImportError:
    sys.path.insert(0, str(ROOT))

YEAR_S = 365.25 * 86400.0


def synthetic(jobs: int, gpus: int, load: float, seed: int, horizon_s: float = YEAR_S):
    """(submit_s, duration_s, gpus) arrays of the synthetic workload."""
    rng = np.random.default_rng(seed)
    submit = np.sort(rng.uniform(0.0, horizon_s, jobs))
    k = np.arange(13)
    p = 2.0 ** (-k / 2.0)
    p /= p.sum()
    size = (2 ** rng.choice(k, size=jobs, p=p)).astype(np.int64)
    size = np.minimum(size, gpus)
    dur = np.minimum(rng.lognormal(0.0, 1.5, jobs), 14 * 86400.0)
    scale = load * gpus * horizon_s / float((size * dur).sum())
    dur = np.minimum(dur * scale, 14 * 86400.0)
    return submit, np.round(dur, 3), size


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_engine(args) -> dict:
    from hardware.catalog import load_catalog
    from sim.cluster import levels_for
    from sim.engine import Engine, PoolInfo
    from sim.scenario import SchedulerSpec
    from workloads.jobs import Job

    cat = load_catalog()
    system = cat.system(args.system)
    gpu = cat.system_gpu(system)
    fabric = cat.fabric(system.fabric)
    gpus = args.nodes * system.gpus_per_node
    submit, dur, size = synthetic(args.jobs, gpus, args.load, args.seed, args.days * 86400.0)
    t0 = time.perf_counter()
    jobs = [Job(job_id=str(i), family="trace", kind="trace", gpus=int(g), submit_s=float(s), duration_s=float(d))
            for i, (s, d, g) in enumerate(zip(submit.tolist(), dur.tolist(), size.tolist()))]
    t_jobs = time.perf_counter() - t0
    pool = PoolInfo(name="h100", system=system, gpu=gpu, fabric=fabric, nodes=args.nodes,
                    gpus_per_node=system.gpus_per_node, levels=levels_for(cat, args.system, args.nodes))
    t0 = time.perf_counter()
    eng = Engine([pool], jobs, scheduler=SchedulerSpec(policy=args.policy, backfill_window=args.window),
                 horizon_s=args.days * 86400.0, sample_interval_s=3600.0, seed=args.seed)
    t_build = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    eng.run()
    t_run, cpu = time.perf_counter() - t0, time.process_time() - c0
    c = eng.counts
    done = c["completed"]
    alloc = sum(eng.pool_gpu_s)
    waits = [r.start_s - r.submit_s for r in eng.runs if r.start_s is not None]
    import sim
    compiled = sim.compiled()
    return {"mode": "engine" if compiled else "engine-py", "compiled": compiled, "jobs": args.jobs, "gpus": gpus,
            "wall_s": t_run, "cpu_s": cpu, "build_s": t_build,
            "make_jobs_s": t_jobs, "events": eng.events, "events_per_s": eng.events / t_run,
            "completed": done, "started": c["started"], "backfilled": c["backfilled"],
            "reservations": c["reservations"], "scans_skipped": eng.n_scans_skipped, "utilization": alloc / (gpus * args.days * 86400.0),
            "mean_wait_h": float(np.mean(waits)) / 3600.0 if waits else 0.0,
            "peak_rss_mib": peak_rss_mib()}


def run_bare(args) -> dict:
    import simpy

    from hardware.catalog import load_catalog

    system = load_catalog().system(args.system)
    gpus = args.nodes * system.gpus_per_node
    submit, dur, size = synthetic(args.jobs, gpus, args.load, args.seed, args.days * 86400.0)
    submit_l, dur_l = submit.tolist(), dur.tolist()
    env = simpy.Environment()
    count = [0]

    def job(env, d):
        yield env.timeout(d)
        count[0] += 1

    def source(env):
        last = 0.0
        for s, d in zip(submit_l, dur_l):
            yield env.timeout(s - last)
            last = s
            env.process(job(env, d))

    env.process(source(env))
    t0, c0 = time.perf_counter(), time.process_time()
    env.run(until=args.days * 86400.0)
    t_run, cpu = time.perf_counter() - t0, time.process_time() - c0
    events = 2 * len(submit_l)
    return {"mode": "bare-simpy", "jobs": args.jobs, "gpus": gpus, "wall_s": t_run, "cpu_s": cpu, "events": events,
            "events_per_s": events / t_run, "completed": count[0], "peak_rss_mib": peak_rss_mib()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=12_500)
    ap.add_argument("--system", default="dgx-h100")
    ap.add_argument("--days", type=float, default=YEAR_S / 86400.0,
                    help="simulated days (with --jobs scaled alike, a shorter run with the same dynamics)")
    ap.add_argument("--load", type=float, default=0.7, help="offered load as a fraction of capacity")
    ap.add_argument("--policy", default="backfill")
    ap.add_argument("--window", type=int, default=100, help="backfill window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=("both", "engine", "bare"), default="both")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each mode (alternating); the fastest counts")
    ap.add_argument("--pure", action="store_true",
                    help="also run the pure Python engine (GPUSIM_PURE_PYTHON=1) next to a compiled one")
    ap.add_argument("--json", action="store_true", help="one JSON object per mode")
    args = ap.parse_args(argv)
    if args.mode != "both":
        out = run_engine(args) if args.mode == "engine" else run_bare(args)
        print(json.dumps(out))
        return 0
    # each mode in its own process, alternating, best of --repeat (a shared
    # machine's noise only ever adds time)
    best: dict = {}
    child = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--json", "--pure")]
    runs = [("bare", {}), ("engine", {})]
    import sim
    if args.pure and sim.compiled():
        # (an engine that is not compiled already runs pure Python)
        runs.append(("engine", {"GPUSIM_PURE_PYTHON": "1"}))
    for _ in range(max(1, args.repeat)):
        for mode, extra in runs:
            cmd = [sys.executable, __file__, "--mode", mode] + child
            env = {**os.environ, "PYTHONHASHSEED": "0", **extra}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                return proc.returncode
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if r["mode"] not in best or r["wall_s"] < best[r["mode"]]["wall_s"]:
                best[r["mode"]] = r
    results = [best[m] for m in ("bare-simpy", "engine", "engine-py") if m in best]
    if args.json:
        for r in results:
            print(json.dumps(r))
        return 0
    bare, eng = results[0], results[1]
    span = "one year" if abs(args.days - YEAR_S / 86400.0) < 1e-9 else f"{args.days:g} days"
    print(f"{args.jobs:,} jobs on {eng['gpus']:,} GPUs ({args.nodes:,} x {args.system}), {span}, "
          f"{args.policy}, offered load {args.load:.0%}")
    print(f"{'':<12}{'wall s':>10}{'CPU s':>10}{'events':>12}{'events/s':>12}{'peak MiB':>10}")
    for r in results:
        print(f"{r['mode']:<12}{r['wall_s']:>10.2f}{r['cpu_s']:>10.2f}{r['events']:>12,}{r['events_per_s']:>12,.0f}"
              f"{r['peak_rss_mib']:>10,.0f}")
    for r in results[1:]:
        kind = "compiled with mypyc" if r["compiled"] else "pure Python"
        print(f"{r['mode']} / bare: wall {r['wall_s'] / bare['wall_s']:.2f}x, "
              f"CPU {r['cpu_s'] / bare['cpu_s']:.2f}x ({kind})")
    print(f"utilization {eng['utilization']:.1%}, mean wait {eng['mean_wait_h']:.2f} h, "
          f"backfilled {eng['backfilled']:,}, reservations {eng['reservations']:,}; "
          f"building jobs {eng['make_jobs_s']:.1f} s, engine setup {eng['build_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
