"""Capacity search: targets, bisection finds the smallest passing value,
non-monotone knobs are flagged, and a real search over node counts."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from sim import capacity as cap
from sim.cli import main
from workloads.errors import InputError

SCENARIO = {"name": "cap", "seed": 1, "cluster": {"system": "dgx-h100", "nodes": 4}}


def threshold_point(source, overrides, folder, save):
    """Waits fall and attainment rises with nodes; both targets met from 37 nodes on."""
    n = overrides["cluster.nodes"]
    return {"jobs.wait_p95_s": 10000.0 / n, "inference.slo_attainment": min(1.0, n / 37.0)}


def bumpy_point(source, overrides, folder, save):
    """Meets the target at 10..12 and from 30 on: not monotone."""
    n = overrides["cluster.nodes"]
    return {"m": 1.0 if 10 <= n <= 12 or n >= 30 else 0.0}


def failing_small_point(source, overrides, folder, save):
    """Below 5 nodes the scenario does not load (a job larger than the cluster)."""
    n = overrides["cluster.nodes"]
    if n < 5:
        return {"error": f"the job asks for 40 GPUs but the largest pool it may use has {8 * n}"}
    return {"jobs.wait_p95_s": 3600.0 * 8 / n}


@pytest.mark.parametrize("text,metric,op,value", [
    ("inference.slo_attainment>=0.99", "inference.slo_attainment", ">=", 0.99),
    ("jobs.wait_p95_s <= 1h", "jobs.wait_p95_s", "<=", 3600.0),
    ("inference.slo_attainment>=99.5%", "inference.slo_attainment", ">=", 0.995),
    ("energy_kwh<2M", "energy_kwh", "<", 2e6),
])
def test_parse_target(text, metric, op, value):
    t = cap.parse_target(text)
    assert (t.metric, t.op) == (metric, op) and t.value == pytest.approx(value)


@pytest.mark.parametrize("text", ["slo", "x=>1", "x>=", "jobs.wait_p95_s<=soon", "a==1"])
def test_bad_targets(text):
    with pytest.raises(InputError):
        cap.parse_target(text)


def test_target_with_missing_value_fails():
    t = cap.parse_target("m>=1")
    assert not t.met({}) and not t.met({"m": float("nan")}) and t.met({"m": 1.0})


@pytest.mark.parametrize("workers", [1, 3])
def test_finds_the_smallest_value_doubling_from_the_scenario(workers):
    r = cap.search(SCENARIO, "cluster.nodes", ["jobs.wait_p95_s<=5m", "inference.slo_attainment>=99%"],
                   runner=threshold_point, workers=workers)
    # 10000/n <= 300 from n = 34; attainment >= 0.99 from n = 37
    assert r.value == 37 and r.monotone
    t = r.table
    assert list(t["cluster.nodes"]) == sorted(t["cluster.nodes"])
    assert list(t["meets_targets"]) == [n >= 37 for n in t["cluster.nodes"]]
    assert {4, 8, 16, 32, 64} <= set(t["cluster.nodes"])  # doubled from the scenario's 4
    assert 36 in set(t["cluster.nodes"]) or workers > 1
    # bracket (1 and 4 together, then 8, 16, 32, 64) and bisection of [32, 64]:
    # 5 bisection rounds on one worker, 3 with three (the bracket shrinks 4x per round)
    assert r.rounds == 5 + (5 if workers == 1 else 3)


@settings(max_examples=40, deadline=None)
@given(threshold=st.integers(1, 300), lo=st.integers(1, 5), extra=st.integers(0, 400))
def test_bisection_matches_a_scan(threshold, lo, extra):
    def ok(n):
        return n >= threshold
    hi = max(lo, threshold) + extra
    r = cap.search(SCENARIO, "cluster.nodes", ["m>=1"], lo=lo, hi=hi, workers=1,
                   runner=lambda s, o, f, v: {"m": float(ok(o["cluster.nodes"]))})
    assert r.value == max(lo, threshold)
    assert len(r.table) <= 2 + (hi - lo + 1).bit_length()


def test_no_value_meets_the_targets():
    r = cap.search(SCENARIO, "cluster.nodes", ["jobs.wait_p95_s<=1s"], runner=threshold_point, lo=1, hi=20, workers=1)
    assert r.value is None and any("--max 20" in n for n in r.notes)


def test_non_monotone_knob_is_flagged_and_scan_finds_the_smallest():
    r = cap.search(SCENARIO, "cluster.nodes", ["m>=1"], runner=bumpy_point, lo=1, hi=40, workers=1)
    assert r.value is not None
    scan = cap.search(SCENARIO, "cluster.nodes", ["m>=1"], runner=bumpy_point, lo=1, hi=40, scan=True, workers=1)
    assert scan.value == 10 and not scan.monotone and len(scan.table) == 40
    assert any("not monotone" in n for n in scan.notes)


def test_points_that_do_not_load_count_as_failing():
    r = cap.search(SCENARIO, "cluster.nodes", ["jobs.wait_p95_s<=1h"], runner=failing_small_point, workers=1)
    assert r.value == 8
    errs = r.table.set_index("cluster.nodes")["error"]
    assert "largest pool" in errs.loc[4] and errs.loc[8] == ""


def test_unknown_metric_names_the_close_one():
    with pytest.raises(InputError, match="did you mean 'jobs.wait_p95_s'"):
        cap.search(SCENARIO, "cluster.nodes", ["jobs.wait_p59_s<=1h"], runner=threshold_point, workers=1)


def test_bad_knobs_stop_before_any_run():
    def boom(*a):
        raise AssertionError("ran a point")
    with pytest.raises(InputError, match="unknown key"):
        cap.search(SCENARIO, "cluster.nodez", ["m>=1"], hi=8, runner=boom)
    with pytest.raises(InputError, match="not a number"):
        cap.search(SCENARIO, "cluster.system", ["m>=1"], runner=boom)
    with pytest.raises(InputError, match="no cluster.pools.0.nodes"):
        cap.search(SCENARIO, "cluster.pools.0.nodes", ["m>=1"], runner=boom)
    with pytest.raises(InputError, match="below --min"):
        cap.search(SCENARIO, "cluster.nodes", ["m>=1"], lo=8, hi=4, runner=boom)


def test_vary_one_pool_of_a_mixed_cluster():
    mixed = {"name": "mixed", "cluster": {"pools": [{"system": "dgx-h100", "nodes": 16},
                                                    {"system": "dgx-b200", "nodes": 2}]}}
    seen = []

    def runner(source, overrides, folder, save):
        seen.append(overrides)
        return {"m": float(overrides["cluster.pools.1.nodes"] >= 6)}
    r = cap.search(mixed, "cluster.pools.1.nodes", ["m>=1"], runner=runner, workers=1,
                   fixed={"cluster.pools.0.nodes": 8})
    assert r.value == 6 and all(o["cluster.pools.0.nodes"] == 8 for o in seen)


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("cluster: {system: dgx-h100, nodes: 4}\n")
    assert main(["capacity", str(path), "--vary", "cluster.nodes"]) == 2
    assert "no --target" in capsys.readouterr().err
    assert main(["capacity", str(path), "--vary", "cluster.nodes", "--target", "x>=1", "--set", "seed=1,2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one value per key" in err[0]


# ------------------------------------------------------------ real engine
def _api_ready() -> bool:
    try:
        import sim.api  # noqa: F401
        return True
    except ImportError:
        return False


SMALL = """
name: cap-real
seed: 5
duration: 2d
cluster: {system: dgx-h100, nodes: 1}
outputs: {report: false, parquet: false}
workloads:
  - family: post_training
    kind: sft
    base_model: llama3-8b
    count: 24
    tokens: 1e9
    gpus: 8
    arrival: {start: 0, end: 1d}
"""


@pytest.mark.skipif(not _api_ready(), reason="sim.api not available")
def test_real_search_b200_nodes_replacing_h100_nodes(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    found = {}
    for system in ("dgx-h100", "dgx-b200"):
        code = main(["capacity", str(path), "--vary", "cluster.nodes", "--target", "jobs.wait_p95_s<=30m",
                     "--set", f"cluster.system={system}", "--max", "16", "--workers", "1", "--json",
                     "-o", str(tmp_path / system)])
        d = json.loads(capsys.readouterr().out)
        assert code == 0 and d["met"] and d["monotone"]
        rows = {p["cluster.nodes"]: p for p in d["points"]}
        best = d["value"]
        assert rows[best]["jobs.wait_p95_s"] <= 1800 and rows[best]["meets_targets"]
        assert best > 1 and rows[best - 1]["meets_targets"] is False  # the one below was tried and failed
        assert all(p["meets_targets"] == (n >= best) for n, p in rows.items())
        assert (tmp_path / system / "capacity.csv").exists()
        found[system] = best
    # a B200 does a fine-tuning step faster than an H100: fewer nodes do the same work
    assert found["dgx-b200"] < found["dgx-h100"]
