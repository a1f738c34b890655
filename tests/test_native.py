"""The compiled engine (mypyc, setup.py) and its Python sources are one
program: the same scenario gives byte-identical tables either way."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sim

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("jobs.csv", "utilization.csv", "demand.csv")


def _run(example: str, out: Path, pure: bool) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("GPUSIM_PURE_PYTHON", None)
    if pure:
        env["GPUSIM_PURE_PYTHON"] = "1"
    code = ("import sys, sim; from sim.cli import main; "
            f"assert sim.compiled() is {not pure}, 'wrong engine build'; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(ROOT / "examples" / f"{example}.yaml"),
                           "-o", str(out), "--quiet"], capture_output=True, text=True, env=env,
                          cwd=out.parent)     # not the repository root: its sim/ is the uncompiled source
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_engine_is_compiled_where_the_build_promised_it():
    """CI installs with a C compiler at hand and says so (GPUSIM_EXPECT_COMPILED):
    a build that silently fell back to pure Python fails here."""
    if os.environ.get("GPUSIM_EXPECT_COMPILED") != "1":
        pytest.skip("no compiled build expected (GPUSIM_EXPECT_COMPILED unset)")
    assert sim.compiled()


@pytest.mark.parametrize("example", ["quickstart", "gb200-what-if", "alibaba-trace"])
def test_compiled_and_pure_python_engines_write_the_same_tables(tmp_path, example):
    if not sim.compiled():
        pytest.skip("the engine is not compiled here (pip install . builds it)")
    _run(example, tmp_path / "compiled", pure=False)
    _run(example, tmp_path / "pure", pure=True)
    for name in TABLES:
        a = (tmp_path / "compiled" / name).read_bytes()
        b = (tmp_path / "pure" / name).read_bytes()
        assert a == b, f"{example}: {name} differs between the compiled and the pure Python engine"


def test_setup_compiles_the_modules_the_package_can_run_from_source():
    """setup.py's NATIVE and sim.NATIVE_MODULES (what GPUSIM_PURE_PYTHON and
    the stale-build check load from source, in import order) name the same
    modules."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    native = next(ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NATIVE")
    assert tuple(Path(p).stem for p in native) == sim.NATIVE_MODULES
    assert all(p.startswith("sim/") for p in native)
