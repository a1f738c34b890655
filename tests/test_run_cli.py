"""`gpusim run` and the Python API's run(): outputs, atomic folders, errors."""
import json
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"

JOB_COLUMNS = ["job_id", "family", "kind", "tenant", "gpus", "submit_s", "start_s", "end_s", "state", "gpu_hours",
               "lost_gpu_hours", "restarts", "preemptions"]


def small(tmp_path, **extra) -> Path:
    trace = tmp_path / "jobs.csv"
    trace.write_text("submit_s,duration_s,gpus,tenant\n0,3600,8,a\n60,600,16,b\n120,7200,4,a\n")
    text = ("name: small\nduration: 1d\ncluster: {system: dgx-h100, nodes: 4}\n"
            "scheduler: {policy: backfill}\noutputs: {sample_interval: 1h}\n"
            f"workloads:\n  - {{family: trace, path: {trace.name}}}\n")
    for k, v in extra.items():
        text += f"{k}: {v}\n"
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_quickstart_writes_every_output(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["run", str(QUICKSTART), "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "utilization (allocated)" in text and str(out) in text
    for name in ("summary.json", "jobs.csv", "utilization.csv", "demand.csv", "jobs.parquet",
                 "utilization.parquet", "demand.parquet", "report.html", "utilization.png"):
        assert (out / name).exists(), name
    s = json.loads((out / "summary.json").read_text())
    for key in ("gpus", "duration_s", "gpu_hours_capacity", "gpu_hours_allocated", "utilization_allocated",
                "jobs_submitted", "jobs_completed", "lost_gpu_hours", "energy_kwh", "events", "wall_s"):
        assert key in s, key
    assert 0 < s["utilization_allocated"] <= 1
    assert s["gpu_hours_allocated"] <= s["gpu_hours_capacity"]
    for fam in ("pretraining", "post_training", "inference", "trace"):
        assert isinstance(s[fam], dict) and s[fam]["jobs"] > 0
    jobs = pd.read_csv(out / "jobs.csv")
    assert list(jobs.columns[:len(JOB_COLUMNS)]) == JOB_COLUMNS
    assert set(jobs.state) <= {"completed", "running", "queued", "cancelled"}
    assert ((jobs.family == "inference") == (jobs.kind == "serving")).all()
    util = pd.read_csv(out / "utilization.csv")
    for col in ("time_s", "gpus_total", "gpus_allocated", "gpus_pretraining", "gpus_inference", "queued_jobs",
                "queued_gpus"):
        assert col in util, col
    assert (util.gpus_allocated <= util.gpus_total).all()
    demand = pd.read_csv(out / "demand.csv")
    assert list(demand.columns) == ["time_s", "family", "kind", "gpu_hours_demanded", "gpu_hours_served"]
    pq = pd.read_parquet(out / "jobs.parquet")
    assert list(pq.columns) == list(jobs.columns) and len(pq) == len(jobs)
    assert (pq.job_id == jobs.job_id.astype(str)).all() and pq.gpu_hours.sum() == pytest.approx(jobs.gpu_hours.sum())


def test_seed_set_and_json(tmp_path, capsys):
    p = small(tmp_path)
    assert main(["run", str(p), "-o", str(tmp_path / "a"), "--no-report", "--quiet", "--json",
                 "--seed", "9", "--set", "cluster.nodes=2"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["seed"] == 9 and s["gpus"] == 16 and s["output"].endswith("a")
    assert not (tmp_path / "a" / "report.html").exists()


def test_rerun_replaces_and_failed_run_keeps_earlier_results(tmp_path, monkeypatch, capsys):
    p = small(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(p), "-o", str(out), "--no-report", "--quiet"]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert main(["run", str(p), "-o", str(out), "--no-report", "--quiet", "--set", "cluster.nodes=3"]) == 0
    assert (out / "summary.json").read_bytes() != before["summary.json"]
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    import sim.outputs as outputs
    real = outputs.write_folder

    def interrupted(result, folder, **kw):
        (Path(folder) / "jobs.csv").write_text("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_folder", interrupted)
    assert main(["run", str(p), "-o", str(out), "--no-report", "--quiet", "--set", "cluster.nodes=2"]) == 130
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".out")] == []
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(outputs, "write_folder", real)


def test_refuses_to_replace_a_folder_that_is_not_an_output(tmp_path, capsys):
    p = small(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["run", str(p), "-o", str(tmp_path / "mine"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "holds other files" in err and len(err.splitlines()) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_bad_trace_row_is_one_line_naming_file_and_line(tmp_path, capsys):
    p = small(tmp_path)
    (tmp_path / "jobs.csv").write_text("submit_s,duration_s,gpus\n0,10,8\n5,-3,8\n")
    assert main(["run", str(p), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "duration_s is -3" in err and "jobs.csv, line 3" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_job_larger_than_the_cluster_is_an_input_error(tmp_path, capsys):
    p = small(tmp_path)
    (tmp_path / "jobs.csv").write_text("submit_s,duration_s,gpus\n0,10,8\n5,3,64\n")
    assert main(["run", str(p), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "asks for 64 GPUs" in err and "32" in err


def test_missing_output_flag_and_bad_set(tmp_path, capsys):
    p = small(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["run", str(p)])
    assert e.value.code == 2
    assert main(["run", str(p), "-o", str(tmp_path / "o"), "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_api_run_returns_frames_and_reports_progress(tmp_path):
    from sim.api import Result, run

    calls = []
    r = run(str(small(tmp_path)), progress=lambda *a: calls.append(a))
    assert isinstance(r, Result) and calls and calls[-1][0] == calls[-1][1] == 86400.0
    assert isinstance(r.jobs, pd.DataFrame) and len(r.jobs) == 3
    assert r.requests.empty
    assert "small" in r._repr_html_()
    folder = r.save(tmp_path / "saved", report=False)
    assert (folder / "jobs.parquet").exists() and (folder / "summary.json").exists()
