"""gpusim compare: two output folders side by side, with plots."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from sim.cli import main
from sim.compare import compare, write_comparison


def write_run(folder, nodes: int, wait_s: float, slo: float, inference=True):
    """An output folder as gpusim run writes it, with made-up numbers."""
    folder.mkdir(parents=True)
    t = np.arange(0, 86400.0, 3600.0)
    gpus = nodes * 8
    pd.DataFrame({"time_s": t, "gpus_total": gpus, "gpus_allocated": gpus // 2, "gpus_pretraining": gpus // 2,
                  "queued_jobs": 1, "queued_gpus": 8}).to_csv(folder / "utilization.csv", index=False)
    n = 10
    pd.DataFrame({"job_id": range(n), "family": "pretraining", "kind": "pretraining", "tenant": "a", "gpus": 8,
                  "submit_s": np.arange(n) * 100.0, "start_s": np.arange(n) * 100.0 + wait_s,
                  "end_s": np.arange(n) * 100.0 + wait_s + 50, "state": "completed", "gpu_hours": 1.0,
                  "lost_gpu_hours": 0.0, "restarts": 0, "preemptions": 0}).to_csv(folder / "jobs.csv", index=False)
    pd.DataFrame(columns=["time_s", "family", "kind", "gpu_hours_demanded", "gpu_hours_served"]).to_csv(
        folder / "demand.csv", index=False)
    summary = {"name": folder.name, "gpus": gpus, "duration_s": 86400.0, "utilization_allocated": 0.5,
               "jobs_submitted": n, "jobs_completed": n, "energy_kwh": 100.0 * nodes}
    if inference:
        summary["inference"] = {"slo_attainment": slo, "ttft_p99_s": 1.0 / nodes, "tpot_p99_s": 0.05}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_compare_lines_up_metrics_with_the_change(tmp_path):
    write_run(tmp_path / "h100", 8, wait_s=600.0, slo=0.9)
    write_run(tmp_path / "b200", 4, wait_s=300.0, slo=0.99)
    c = compare(tmp_path / "h100", tmp_path / "b200")
    t = c.table.set_index("metric")
    assert (c.label_a, c.label_b) == ("h100", "b200")
    assert t.loc["gpus", "a"] == 64 and t.loc["gpus", "b"] == 32
    assert t.loc["gpus", "change"] == -32 and t.loc["gpus", "change_pct"] == pytest.approx(-50.0)
    assert t.loc["jobs.wait_mean_s", "change"] == pytest.approx(-300.0)
    assert t.loc["inference.slo_attainment", "change_pct"] == pytest.approx(10.0)
    assert t.loc["utilization_allocated", "change"] == 0.0


def test_write_comparison_embeds_every_png(tmp_path):
    write_run(tmp_path / "a", 8, 600.0, 0.9)
    write_run(tmp_path / "b", 4, 300.0, 0.99, inference=False)  # one side without inference
    c = compare(tmp_path / "a", tmp_path / "b")
    html_path = write_comparison(c, tmp_path / "cmp")
    html = html_path.read_text()
    pngs = sorted((tmp_path / "cmp").glob("*.png"))
    assert len(pngs) == 3
    embedded = [base64.b64decode(m) for m in re.findall(r"base64,([A-Za-z0-9+/=]+)'", html)]
    assert sorted(embedded) == sorted(p.read_bytes() for p in pngs)
    assert not re.search(r"(src|href)=['\"]?https?:", html)
    csv = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(csv.columns) == ["metric", "a", "b", "change", "change_pct"]
    row = csv.set_index("metric").loc["inference.slo_attainment"]
    assert row["a"] == 0.9 and np.isnan(row["b"]) and np.isnan(row["change"])


def test_same_folder_names_get_told_apart(tmp_path):
    write_run(tmp_path / "x" / "run", 2, 1.0, 0.9)
    write_run(tmp_path / "y" / "run", 2, 1.0, 0.9)
    c = compare(tmp_path / "x" / "run", tmp_path / "y" / "run")
    assert (c.label_a, c.label_b) == ("x/run", "y/run")


def test_cli_compare(tmp_path, capsys):
    write_run(tmp_path / "a", 8, 600.0, 0.9)
    write_run(tmp_path / "b", 4, 300.0, 0.99)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("gpus "))
    assert line.split()[1:] == ["64", "32", "-32", "(-50.0%)"]
    assert (tmp_path / "c" / "compare.html").exists()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["html"].endswith("compare.html") and (tmp_path / "b" / "compare-vs-a" / "compare.html").exists()
    row = next(r for r in d["metrics"] if r["metric"] == "inference.slo_attainment")
    assert row["a"] == 0.9 and row["b"] == 0.99


def test_cli_compare_bad_folder_is_one_line(tmp_path, capsys):
    write_run(tmp_path / "a", 8, 600.0, 0.9)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no output folder")
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "empty")]) == 2
    assert "no summary.json" in capsys.readouterr().err
