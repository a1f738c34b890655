"""Speed of the analytical models the engine leans on.

    python benchmarks/bench_models.py

Prints, for each: what was timed, the best of a few repetitions, and the
target it is held to (the issues' figures, or what the engine needs):
- the training parallelism search for llama3-405b on 16,384 H100 (< 1 s);
- one serving-model iteration for the request simulator (~5 us), and a
  fleet-mode estimate cold and cached;
- the structural topology index of 100,000 GPUs (12,500 DGX H100 nodes);
- the report of a year sampled every minute.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware import perf_serving as ps  # noqa: E402
from hardware import perf_training as pt  # noqa: E402
from hardware.topology import PoolSpec, build_topology, span  # noqa: E402
from sim.catalogs import load_catalogs  # noqa: E402


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def row(what, seconds, target):
    print(f"{what:58s} {seconds * 1e3:10.3f} ms   target {target}")


def main() -> None:
    cats = load_catalogs()
    hw, models = cats.hardware, cats.models
    h100, dgx, ndr = hw.gpu("h100"), hw.system("dgx-h100"), hw.fabric("ndr")

    def search_405b():
        pt._CACHE.clear()
        pt.estimate_training(models.get("llama3-405b"), h100, dgx, ndr, 16384, seq_len=8192,
                             global_batch_tokens=16 * 2**20)
    row("training search: llama3-405b on 16,384 H100", best_of(search_405b), "< 1 s")

    cfg = ps.ServingConfig(models.get("llama3-70b"), h100, dgx, ndr, tp=4, precision="fp8")
    args = [(1 + (97 * i) % 8192, 100 + i % 3000, i % 200, 1000 * (i % 400), 1 + i % 4) for i in range(3000)]
    ps.iteration_time(cfg, *args[0])
    t = best_of(lambda: [ps.iteration_time(cfg, *a) for a in args]) / len(args)
    row("serving iteration_time (request simulator), per call", t, "~5 us")
    t = best_of(lambda: [ps.decode_step_time(cfg, a[2] + 1, a[3]) for a in args]) / len(args)
    row("serving decode_step_time, per call", t, "~2 us")

    def cold():
        ps.estimate.cache_clear()
        for i in range(40):
            ps.estimate(cfg, 500 + 37 * i, 200 + 11 * i, 2.0, 0.05)
    row("serving estimate under SLOs, cold, per call", best_of(cold) / 40, "< 5 ms")
    t = best_of(lambda: [ps.replicas_needed(cfg, 10.0, 500 + 37 * (i % 40), 200 + 11 * (i % 40), 2.0, 0.05)
                         for i in range(2000)]) / 2000
    row("fleet replicas_needed, cached, per call", t, "< 0.1 ms")

    def topo():
        t = build_topology([PoolSpec("dgx-h100", 12_500)], hw)
        span(t, nodes=np.arange(0, 12_500, 7))
    row("topology index of 100,000 GPUs + one span query", best_of(topo), "< 1 s")

    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_report import synthetic  # a Result-shaped object of made-up numbers
        from sim import report
        year = synthetic(days=365, sample_s=60, n_jobs=20000, n_req=100000)
        with tempfile.TemporaryDirectory() as d:
            row("report.html of a year at 1-minute samples", best_of(lambda: report.write_report(year, Path(d)), 1),
                "a few seconds")
    except ImportError as exc:  # the tests folder is not shipped with an installed package
        print(f"report benchmark skipped: {exc}")


if __name__ == "__main__":
    main()
