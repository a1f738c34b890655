"""Every input error: exit status 2, one line on stderr in the form
``error: <what> (<where>): <fix>``, no traceback; earlier results survive."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from sim.cli import main

GOOD = {
    "name": "bad-input",
    "duration": "1d",
    "cluster": {"system": "dgx-h100", "nodes": 2},
    "workloads": [{"family": "trace", "path": "jobs.csv"}],
}
JOBS = "submit_s,duration_s,gpus\n0,3600,8\n60,1800,4\n"


def write(tmp_path, data=None, raw=None, name="s.yaml"):
    (tmp_path / "jobs.csv").write_text(JOBS)
    p = tmp_path / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text(yaml.safe_dump(data))
    return p


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def mutate(**changes):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = data
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[keys[-1]] = value
    return data


@pytest.mark.parametrize("raw,needle", [
    (b"", "empty"),
    (b"\x00\x01binary\xff", "binary"),
    (b"name: \xff\xfe\n", "UTF-8"),
    (b"name: x\ncluster: {system: dgx-h100, nodes: 2\n", "line"),
])
def test_bad_files(tmp_path, capsys, raw, needle):
    p = write(tmp_path, raw=raw)
    assert_one_line_error(*run_cli(capsys, "run", str(p), "-o", str(tmp_path / "out"))[::2], needle)


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, "does not exist")


@pytest.mark.parametrize("changes,needles", [
    ({"clustr": {}}, ["'clustr'", "'cluster'"]),
    ({"cluster__system": "dgx-h1000"}, ["unknown system", "dgx-h100"]),
    ({"cluster__fabric": {"link": "ndrx"}}, ["unknown fabric", "ndr"]),
    ({"cluster__nodes": 0}, ["cluster.nodes"]),
    ({"cluster__nodes": -3}, ["cluster.nodes"]),
    ({"duration": "ten days"}, ["duration"]),
    ({"workloads": [{"family": "pretraining", "model": "llama-3-8b", "tokens": "1T", "gpus": 8}]}, ["unknown model", "llama3-8b"]),
    ({"workloads": [{"family": "pretraining", "model": "llama3-8b", "tokens": "1T", "gpus": 64}]}, ["64 GPUs", "16"]),
    ({"workloads": [{"family": "pretraining", "model": "llama3-8b", "tokens": "1Q", "gpus": 8}]}, ["tokens"]),
    ({"catalog": {"gpus": {"h100": {"hbm_gib": -1}}}}, ["hbm_gib"]),
])
def test_bad_scenarios(tmp_path, capsys, changes, needles):
    p = write(tmp_path, mutate(**changes))
    code, _, err = run_cli(capsys, "run", str(p), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, *needles)


def test_unknown_gpu_in_user_catalog(tmp_path, capsys):
    cat = tmp_path / "cat.yaml"
    cat.write_text(yaml.safe_dump({"systems": {"x": {"gpu": "h1OO", "gpus_per_node": 8, "nvlink_domain_gpus": 8,
                                                      "nics_per_node": 8, "nic_gbps": 400, "fabric": "ndr",
                                                      "su_nodes": 32, "node_max_w": 1e4, "node_overhead_w": 2e3,
                                                      "source": "x"}}}))
    code, _, err = run_cli(capsys, "catalog", "systems", "--catalog", str(cat))
    assert_one_line_error(code, err, "unknown GPU", "h100")


def test_bad_trace_row_names_file_and_line(tmp_path, capsys):
    p = write(tmp_path, GOOD)
    (tmp_path / "jobs.csv").write_text("submit_s,duration_s,gpus\n0,3600,8\n60,-5,4\n")
    code, _, err = run_cli(capsys, "run", str(p), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, "jobs.csv", "line 3")


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_failed_run_keeps_earlier_results(tmp_path, capsys):
    p = write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert run_cli(capsys, "run", str(p), "-o", str(out))[0] == 0
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    assert "summary.json" in before and json.loads(before["summary.json"])["jobs_completed"] == 2
    bad = write(tmp_path, mutate(cluster__system="nope"), name="bad.yaml")
    assert run_cli(capsys, "run", str(bad), "-o", str(out))[0] == 2
    after = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    assert after == before
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".") and "out" in x.name], "temporary folder left behind"


def test_debug_shows_traceback(tmp_path):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "sim.cli", "--debug", "run", str(tmp_path / "missing.yaml"),
                        "-o", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "Traceback" in r.stderr
