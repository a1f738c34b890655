"""When and where: the SimPy engine, cluster state, placement, scheduling,
job lifecycle, serving fleets, metrics, reports, the CLI and sweeps.

``sim.run(scenario)`` runs a scenario (a YAML path, a dict or a Scenario)
and returns a Result with the summary and the tables as DataFrames.
"""

import os as _os

__version__ = "0.1.0"

NATIVE_MODULES = ("metrics", "cluster", "scheduler", "engine")
"""The modules a build compiles with mypyc (setup.py), in import order."""


def compiled() -> bool:
    """Whether the engine runs compiled (mypyc) code."""
    from sim import engine
    return not engine.__file__.endswith(".py")


def _stale_or_unwanted() -> str:
    """Why the Python sources of NATIVE_MODULES should run although a build
    compiled them ('' where the compiled modules are to run): the user asks
    for it (GPUSIM_PURE_PYTHON=1), or a source changed since the build (an
    editable install: the compiled module would hide the edit)."""
    import hashlib
    import json
    from importlib.machinery import EXTENSION_SUFFIXES
    here = _os.path.dirname(__file__)
    if not any(_os.path.exists(_os.path.join(here, "engine" + s)) for s in EXTENSION_SUFFIXES):
        return ""
    if _os.environ.get("GPUSIM_PURE_PYTHON", "") not in ("", "0"):
        return "asked"
    try:
        with open(_os.path.join(here, "_compiled.json")) as f:
            built = json.load(f)
    except (OSError, ValueError):
        return "stale"
    for name in NATIVE_MODULES:
        with open(_os.path.join(here, name + ".py"), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != built.get(name):
                return "stale"
    return ""


def _run_python_sources() -> None:
    import importlib.util
    import sys
    here = _os.path.dirname(__file__)
    for name in NATIVE_MODULES:
        spec = importlib.util.spec_from_file_location(f"{__name__}.{name}", _os.path.join(here, name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        globals()[name] = mod


_why = _stale_or_unwanted()
if _why:
    if _why == "stale":
        import warnings
        warnings.warn("gpusim: sim/{metrics,cluster,scheduler,engine}.py changed since they were compiled; "
                      "running the Python sources (pip install -e . compiles them again)", stacklevel=2)
    _run_python_sources()

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
