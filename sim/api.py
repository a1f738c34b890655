"""The Python API of a simulation run: ``run(source) -> Result``.

    from sim import run
    result = run("examples/quickstart.yaml", seed=1, overrides={"cluster.nodes": 64})
    result.summary["utilization_allocated"]
    result.jobs.groupby("family").gpu_hours.sum()
    result.save("out/")        # CSV + Parquet + summary.json + report.html + PNGs

``gpusim run`` is run() + save() + a short printed summary.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pandas as pd


@dataclass
class Result:
    """A finished run: the scenario it ran, the summary and the tables."""
    scenario: Any
    summary: dict
    jobs: pd.DataFrame
    utilization: pd.DataFrame
    demand: pd.DataFrame
    requests: pd.DataFrame = field(default_factory=pd.DataFrame)

    def save(self, path, parquet: Optional[bool] = None, report: Optional[bool] = None) -> Path:
        """Write the outputs into folder `path` atomically (a temporary
        folder renamed into place at the end); returns the folder."""
        from sim.outputs import save_atomic

        outs = getattr(self.scenario, "outputs", None)
        if parquet is None:
            parquet = outs.parquet if outs is not None else True
        if report is None:
            report = outs.report if outs is not None else True
        return save_atomic(self, path, parquet=parquet, report=report)

    def _repr_html_(self) -> str:
        from sim.report import summary_html
        return summary_html(self)

    def __repr__(self) -> str:
        s = self.summary
        return (f"Result({s.get('name')!r}: {s.get('gpus')} GPUs, {s.get('jobs_completed')}/"
                f"{s.get('jobs_submitted')} jobs completed, utilization {s.get('utilization_allocated', 0):.1%})")


def _stderr_progress(now_s: float, horizon_s: float, events: int, wall_s: float) -> None:
    from workloads.units import format_duration
    rate = events / wall_s if wall_s > 0 else 0.0
    end = "\n" if now_s >= horizon_s else ""
    sys.stderr.write(f"\r  simulated {format_duration(now_s)} of {format_duration(horizon_s)} "
                     f"({100 * now_s / horizon_s:.0f}%), {events:,} events, {rate:,.0f} events/s   {end}")
    sys.stderr.flush()


def run(source: Union[str, Path, dict, Any], seed: Optional[int] = None, overrides: Optional[dict] = None,
        progress: Union[bool, Callable, None] = False, catalogs=None) -> Result:
    """Simulate a scenario (a YAML path, a dict or a Scenario).

    seed replaces the scenario's seed; overrides are dotted keys applied
    before validation ({"cluster.nodes": 64, "workloads.0.gpus": 512});
    progress: True reports simulated time and events/s on stderr, or give a
    callable(sim_time_s, horizon_s, events, wall_s)."""
    from sim.engine import simulate
    from sim.outputs import build_summary, demand_frame, jobs_frame, requests_frame, utilization_frame
    from sim.scenario import check_scenario, load_scenario

    ov = dict(overrides or {})
    if seed is not None:
        ov["seed"] = int(seed)
    scenario = load_scenario(source, ov or None, check=False)
    cats = check_scenario(scenario, catalogs)
    fn = _stderr_progress if progress is True else (progress or None)
    sim = simulate(scenario, cats, fn)
    jobs = jobs_frame(sim)
    util = utilization_frame(sim)
    demand = demand_frame(sim)
    requests = requests_frame(sim)
    summary = build_summary(sim, jobs, util, demand)
    from sim.demand import laws_from_run
    summary["laws"] = laws_from_run(sim, demand)   # per-law demand, multiples, saturation, GPUs needed
    return Result(scenario=scenario, summary=summary, jobs=jobs, utilization=util, demand=demand, requests=requests)
