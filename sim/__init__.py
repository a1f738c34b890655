"""When and where: the SimPy engine, cluster state, placement, scheduling,
job lifecycle, serving fleets, metrics, reports, the CLI and sweeps.

``sim.run(scenario)`` runs a scenario (a YAML path, a dict or a Scenario)
and returns a Result with the summary and the tables as DataFrames.
"""

__version__ = "0.1.0"

__all__ = ["run", "load_scenario", "Result", "__version__"]


def __getattr__(name):
    # Imported on first use so that `gpusim --help` stays fast.
    if name in ("run", "Result"):
        from sim import api
        return getattr(api, name)
    if name == "load_scenario":
        from sim.scenario import load_scenario
        return load_scenario
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
