"""Sweeps: --set parsing, the grid, the metrics namespace, sweep.csv, and the
same numbers on the local, Ray and Dask backends."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from sim import sweep as sw
from sim.cli import main
from workloads.errors import InputError

SCENARIO = {"name": "tiny", "seed": 3, "duration": "1d", "cluster": {"system": "dgx-h100", "nodes": 4}}


# ------------------------------------------------------------ --set values
@pytest.mark.parametrize("text,value", [("8", 8), ("0.5", 0.5), ("1e3", 1000.0), ("true", True), ("false", False),
                                        ("null", None), ("fifo", "fifo"), ("2h", "2h"), ("15T", "15T"),
                                        ("[1, 2]", [1, 2]), ("{a: 1}", {"a": 1}), ("'8'", "8")])
def test_parse_value(text, value):
    assert sw.parse_value(text) == value


def test_parse_set_splits_outside_brackets():
    assert sw.parse_set("cluster.nodes=4,8,16") == ("cluster.nodes", [4, 8, 16])
    assert sw.parse_set("workloads.0.mix={sft: 1, rl: 2},{lora: 1}") == (
        "workloads.0.mix", [{"sft": 1, "rl": 2}, {"lora": 1}])
    assert sw.parse_set("scheduler.policy=fifo") == ("scheduler.policy", ["fifo"])


@pytest.mark.parametrize("text", ["cluster.nodes", "=4", "cluster..nodes=4", "cluster.nodes=4,,8", "a b=1"])
def test_parse_set_rejects_bad_input(text):
    with pytest.raises(InputError):
        sw.parse_set(text)


def test_same_key_twice_is_an_error():
    with pytest.raises(InputError, match="given twice"):
        sw.parse_sets(["cluster.nodes=4", "cluster.nodes=8"])


@given(st.lists(st.integers(-10**9, 10**9), min_size=1, max_size=8))
def test_integer_lists_round_trip(values):
    assert sw.parse_set("k=" + ",".join(map(str, values))) == ("k", values)


def test_grid_is_every_combination_last_key_fastest():
    g = sw.grid({"a": [1, 2, 3], "b": ["x", "y"]})
    assert len(g) == 6
    assert g[:3] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}]
    assert sw.grid({}) == [{}]


# ----------------------------------------------------------------- metrics
def test_metrics_flatten_the_summary_and_add_job_waits():
    jobs = pd.DataFrame({"family": ["pretraining", "post_training", "post_training", "post_training"],
                         "submit_s": [0.0, 100.0, 200.0, 500.0], "start_s": [60.0, 100.0, np.nan, 800.0],
                         "end_s": [500.0, 300.0, np.nan, np.nan], "state": ["completed", "completed", "queued", "running"],
                         "lost_gpu_hours": [1.0, 0.5, 0.0, 0.0], "restarts": [1, 0, 0, 0]})
    r = SimpleNamespace(summary={"duration_s": 1000.0, "utilization_allocated": 0.5, "name": "x",
                                 "inference": {"slo_attainment": 0.99, "ttft_p99_s": None},
                                 "laws": {"pretraining": {"gpu_hours": 10.0}}},
                        jobs=jobs, requests=pd.DataFrame())
    m = sw.metrics(r)
    assert m["utilization_allocated"] == 0.5 and "name" not in m
    assert m["inference.slo_attainment"] == 0.99 and math.isnan(m["inference.ttft_p99_s"])
    assert m["laws.pretraining.gpu_hours"] == 10.0
    waits = [60.0, 0.0, 800.0, 300.0]  # the queued job waits until the end (1000 - 200)
    assert m["jobs.wait_mean_s"] == pytest.approx(np.mean(waits)) == m["wait_mean_s"]
    assert m["jobs.wait_p95_s"] == pytest.approx(np.percentile(waits, 95)) == m["wait_p95_s"]
    assert m["jobs.wait_max_s"] == 800.0
    assert m["jobs.completed_fraction"] == 0.5
    assert m["jobs.post_training.wait_mean_s"] == pytest.approx(np.mean([0.0, 800.0, 300.0]))
    assert m["jobs.pretraining.completed_fraction"] == 1.0
    assert m["jobs.lost_gpu_hours"] == 1.5 and m["jobs.restarts"] == 1.0


def test_metrics_take_latency_from_requests_when_the_summary_has_none():
    req = pd.DataFrame({"ttft_s": np.arange(1.0, 101.0), "tpot_s": 0.05, "e2e_s": 10.0})
    m = sw.metrics(SimpleNamespace(summary={}, jobs=pd.DataFrame(), requests=req))
    assert m["inference.ttft_p50_s"] == pytest.approx(50.5)
    assert m["inference.tpot_p99_s"] == pytest.approx(0.05)
    assert m["jobs.count"] == 0.0


# ------------------------------------------------------------- sweep (fake)
def fake_point(source, overrides, folder, save):
    """Stands in for a simulation: numbers that depend on the point only."""
    nodes = overrides.get("cluster.nodes", 4)
    policy = overrides.get("scheduler.policy", "fifo")
    if folder and save:
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, "summary.json").write_text(json.dumps({"nodes": nodes, "policy": policy}))
    return {"gpus": nodes * 8.0, "wait_mean_s": 1000.0 / nodes / (2 if policy == "backfill" else 1),
            "utilization_allocated": min(1.0, 16 / nodes), "wall_s": 0.01}


def test_sweep_writes_one_row_and_one_folder_per_point(tmp_path):
    df = sw.sweep(SCENARIO, {"cluster.nodes": [4, 8], "scheduler.policy": ["fifo", "backfill"]}, tmp_path,
                  workers=2, runner=fake_point)
    csv = pd.read_csv(tmp_path / "sweep.csv")
    assert list(csv.columns[:4]) == ["point", "cluster.nodes", "scheduler.policy", "folder"]
    assert "wait_mean_s" in csv.columns and csv.columns[-1] == "wall_s"
    assert len(csv) == 4 and list(csv["cluster.nodes"]) == [4, 4, 8, 8]
    assert list(csv["scheduler.policy"]) == ["fifo", "backfill", "fifo", "backfill"]
    assert list(csv["wait_mean_s"]) == [250.0, 125.0, 125.0, 62.5]
    folders = list(csv["folder"])
    assert len(set(folders)) == 4
    for f, nodes in zip(folders, csv["cluster.nodes"]):
        assert json.loads((tmp_path / f / "summary.json").read_text())["nodes"] == nodes
    pd.testing.assert_frame_equal(df, csv, check_dtype=False)  # the returned table is the file
    # the picture: headline metrics against the first swept key, linked to each point's report
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "sweep.html").read_text()
    assert "data:image/png;base64," in page and f"href='{folders[0]}/report.html'" in page


def failing_point(source, overrides, folder, save):
    if overrides["cluster.nodes"] == 1:
        return {"error": "the job asks for 16 GPUs but the largest pool it may use has 8"}
    return {"wait_mean_s": 1.0}


def test_points_that_fail_keep_their_row_with_the_error(tmp_path):
    df = sw.sweep(SCENARIO, {"cluster.nodes": [1, 2]}, tmp_path, workers=1, runner=failing_point)
    assert list(df["error"].fillna("")) == ["the job asks for 16 GPUs but the largest pool it may use has 8", ""]
    assert math.isnan(df["wait_mean_s"].iloc[0]) and df["wait_mean_s"].iloc[1] == 1.0


def test_sweep_stops_on_bad_keys_before_running(tmp_path):
    with pytest.raises(InputError) as exc:
        sw.sweep(SCENARIO, {"cluster.nodez": [4]}, tmp_path, runner=fake_point)
    assert "cluster.nodez" in str(exc.value) and "point" in str(exc.value)
    with pytest.raises(InputError, match="out of range"):
        sw.sweep(SCENARIO, {"cluster.nodes": [4, 0]}, tmp_path, runner=fake_point)
    assert not (tmp_path / "sweep.csv").exists()


def test_unknown_backend_and_bad_workers(tmp_path):
    with pytest.raises(InputError, match="unknown backend"):
        sw.run_tasks([(1,)], backend="spark")
    with pytest.raises(InputError, match="workers"):
        sw.run_tasks([(1,)], workers=0)
    with pytest.raises(InputError, match="--address is for the ray and dask"):
        sw.run_tasks([(1,)], address="tcp://127.0.0.1:8786")


def test_folder_names_are_safe():
    name = sw.folder_name(7, {"catalog": "/tmp/my cat.yaml", "cluster.nodes": 8})
    assert name.startswith("007_") and "/" not in name and " " not in name


def test_cli_bad_set_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("cluster: {system: dgx-h100, nodes: 4}\n")
    assert main(["sweep", str(path), "--set", "cluster.nodes", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--set" in err[0]
    assert main(["sweep", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "o")]) == 2
    assert "no scenario file" in capsys.readouterr().err


# ------------------------------------------------- real runs on every backend
TINY = """
name: tiny-sweep
seed: 11
duration: 2d
cluster: {system: dgx-h100, nodes: 2}
outputs: {report: false, parquet: false}
workloads:
  - family: post_training
    kind: lora
    base_model: llama3-8b
    count: 6
    tokens: 2e8
    gpus: 8
    arrival: {start: 0, end: 1d}
"""


def _api_ready() -> bool:
    try:
        import sim.api  # noqa: F401
        return True
    except ImportError:
        return False


needs_engine = pytest.mark.skipif(not _api_ready(), reason="sim.api not available")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("sc") / "tiny.yaml"
    path.write_text(TINY)
    return path


def _numbers(df):
    return df.drop(columns=[c for c in df.columns if c == "folder" or sw.is_timing(c)])


@pytest.fixture(scope="module")
def local_sweep(tiny, tmp_path_factory):
    if not _api_ready():
        pytest.skip("sim.api not available")
    out = tmp_path_factory.mktemp("local")
    return sw.sweep(tiny, {"cluster.nodes": [1, 2], "seed": [11]}, out, workers=2), out


@needs_engine
def test_sweep_runs_real_points_locally(tiny, local_sweep):
    df, out = local_sweep
    assert list(df["cluster.nodes"]) == [1, 2]
    assert {"wait_mean_s", "utilization_allocated", "jobs.wait_p95_s"} <= set(df.columns)
    # a smaller cluster waits at least as long (same seed, same jobs)
    assert df["wait_mean_s"].iloc[0] >= df["wait_mean_s"].iloc[1]
    for f in df["folder"]:
        assert (out / f / "summary.json").exists()
    again = sw.sweep(tiny, {"cluster.nodes": [1, 2], "seed": [11]}, out / "again", workers=1)  # in-process
    pd.testing.assert_frame_equal(_numbers(again), _numbers(df))


@needs_engine
def test_dask_backend_gives_the_same_numbers(tiny, local_sweep, tmp_path):
    pytest.importorskip("distributed")
    df = sw.sweep(tiny, {"cluster.nodes": [1, 2], "seed": [11]}, tmp_path, backend="dask", workers=2)
    assert sorted(set(df.columns) ^ set(local_sweep[0].columns)) == []
    pd.testing.assert_frame_equal(_numbers(df), _numbers(local_sweep[0]))


@needs_engine
def test_ray_backend_gives_the_same_numbers(tiny, local_sweep, tmp_path):
    pytest.importorskip("ray")
    df = sw.sweep(tiny, {"cluster.nodes": [1, 2], "seed": [11]}, tmp_path, backend="ray", workers=2)
    assert sorted(set(df.columns) ^ set(local_sweep[0].columns)) == []
    pd.testing.assert_frame_equal(_numbers(df), _numbers(local_sweep[0]))


@needs_engine
def test_cli_sweep(tiny, tmp_path, capsys):
    assert main(["sweep", str(tiny), "--set", "cluster.nodes=1,2", "-o", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "sweep.csv (2 points)" in out
    assert main(["sweep", str(tiny), "--set", "cluster.nodes=2", "-o", str(tmp_path / "j"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["points"][0]["cluster.nodes"] == 2 and "wait_mean_s" in d["points"][0]
