"""Build: the engine's four hot modules compiled to C with mypyc.

sim/metrics.py, sim/cluster.py, sim/scheduler.py and sim/engine.py are
plain, type-annotated Python; mypyc turns them into C extension modules
that run the same code about twice as fast (the compiled modules import
first; the Python sources are installed beside them). Everything else is
pure Python.

GPUSIM_PURE_PYTHON=1 at install time builds no extensions; where no C
compiler is found the extensions are skipped with a warning and the pure
Python modules run. At run time GPUSIM_PURE_PYTHON=1 makes an installed
compiled build run its Python sources instead (sim/__init__.py).
"""
import hashlib
import json
import os
import sys

from setuptools import setup

NATIVE = ["sim/metrics.py", "sim/cluster.py", "sim/scheduler.py", "sim/engine.py"]
"""What is compiled, in import order (sim.NATIVE_MODULES names the same; a test compares)."""

BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}
"""The setup.py commands that compile (pip also calls it for metadata)."""


def native_extensions() -> list:
    if os.environ.get("GPUSIM_PURE_PYTHON", "") not in ("", "0") or not BUILDS & set(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("gpusim: mypyc not found, installing the pure Python engine")
        return []
    # other modules are seen as untyped (the four modules type-check alone)
    exts = mypycify(["--follow-imports=skip", "--ignore-missing-imports",
                     "--disable-error-code=annotation-unchecked", *NATIVE], opt_level="3")
    for ext in exts:
        ext.optional = True          # no C compiler: the Python modules run
    # what was compiled: sim/__init__.py runs the sources of an edited module
    hashes = {}
    for path in NATIVE:
        with open(path, "rb") as f:
            hashes[os.path.basename(path)[:-3]] = hashlib.sha256(f.read()).hexdigest()
    with open("sim/_compiled.json", "w") as f:
        json.dump(hashes, f, indent=1)
    return exts


setup(ext_modules=native_extensions())
