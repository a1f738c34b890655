"""When and where: the SimPy engine, cluster state, placement, scheduling,
job lifecycle, serving fleets, metrics, reports, the CLI and sweeps."""

__version__ = "0.1.0"
