"""The bundled examples load, run and say something sensible."""
from pathlib import Path

import pytest

import sim
from sim.scenario import load_scenario

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_the_readme_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.yaml", "three-laws.yaml", "inference-requests.yaml", "alibaba-trace.yaml",
            "gb200-what-if.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_loads(path):
    s = load_scenario(str(path))
    assert s.workloads


@pytest.mark.parametrize("name", ["quickstart", "inference-requests", "alibaba-trace", "gb200-what-if"])
def test_examples_run(name):
    path = next(p for p in EXAMPLES if p.stem == name)
    r = sim.run(str(path))
    s = r.summary
    assert s["jobs_completed"] <= s["jobs_submitted"]
    assert 0 <= s["utilization_allocated"] <= 1
    if name == "inference-requests":
        assert s["inference"]["requests_completed"] == 2000 == len(r.requests)
        assert 0.9 <= s["inference"]["slo_attainment"] <= 1
    else:
        assert s["jobs_completed"] > 0 and s["energy_kwh"] > 0
