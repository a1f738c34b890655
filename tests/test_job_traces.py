"""Cluster job trace loaders: csv, Alibaba openb, Helios/Acme, Philly."""
import json
from pathlib import Path

import pytest

from workloads.errors import InputError
from workloads.job_traces import load_job_trace

OPENB = Path("/work/shared/traces/alibaba_openb_pod_list_default.csv")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_required_and_optional_columns(tmp_path):
    p = write(tmp_path, "jobs.csv", "submit_s,duration_s,gpus,job_id,tenant,priority,kind\n"
                                    "0,3600,8,a,research,2,pretrain\n5.5,60,1,,,,\n")
    jobs = load_job_trace(p, "csv", tenant="fallback", priority=7)
    assert [j.job_id for j in jobs] == ["a", "3"]          # a missing job_id becomes the line number
    a, b = jobs
    assert (a.submit_s, a.duration_s, a.gpus, a.tenant, a.priority, a.kind) == (0.0, 3600.0, 8, "research", 2, "pretrain")
    assert (b.submit_s, b.tenant, b.priority, b.kind, b.family) == (5.5, "fallback", 7, "trace", "trace")


def test_csv_time_scale_scales_submits_not_durations(tmp_path):
    p = write(tmp_path, "jobs.csv", "submit_s,duration_s,gpus\n100,50,1\n")
    (j,) = load_job_trace(p, "csv", time_scale=0.5)
    assert (j.submit_s, j.duration_s) == (50.0, 50.0)


@pytest.mark.parametrize("row, what", [
    ("10,,4", "duration_s is missing"),
    ("10,-5,4", "duration_s is -5"),
    ("10,abc,4", "duration_s 'abc' is not a number"),
    ("-1,5,4", "submit_s is -1"),
    ("1,5,0", "gpus is 0"),
    ("1,5,2.5", "gpus '2.5' is not a whole number"),
])
def test_csv_bad_row_names_file_and_line(tmp_path, row, what):
    p = write(tmp_path, "bad.csv", "submit_s,duration_s,gpus\n0,1,1\n" + row + "\n")
    with pytest.raises(InputError) as e:
        load_job_trace(p, "csv")
    assert what in e.value.what
    assert e.value.where == f"{p}, line 3"


def test_csv_missing_required_column(tmp_path):
    p = write(tmp_path, "bad.csv", "submit_s,gpus\n0,1\n")
    with pytest.raises(InputError, match="duration_s"):
        load_job_trace(p, "csv")


def test_unknown_format_suggests(tmp_path):
    p = write(tmp_path, "j.csv", "submit_s,duration_s,gpus\n0,1,1\n")
    with pytest.raises(InputError, match="alibaba-openb"):
        load_job_trace(p, "alibaba")


@pytest.mark.skipif(not OPENB.exists(), reason="shared openb trace not present")
def test_alibaba_openb_real_trace():
    jobs = load_job_trace(OPENB, "alibaba-openb")
    # 8,152 pods: 1,088 without a GPU and 897 never scheduled are skipped
    # (the sets overlap), the rest are GPU pods that ran
    assert 6000 < len(jobs) < 7064
    assert min(j.submit_s for j in jobs) == 0.0
    assert all(j.duration_s >= 0 and j.gpus in (1, 2, 4, 8) for j in jobs)
    assert {j.kind for j in jobs} <= {"ls", "be", "burstable", "guaranteed"}
    first = jobs[0]
    assert first.job_id == "openb-pod-0000" and first.duration_s == 12537496 and first.priority == 2


def test_alibaba_openb_bad_times(tmp_path):
    head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
    p = write(tmp_path, "o.csv", head + "p0,1,1,1,1000,,LS,Running,0,100,10\np1,1,1,1,500,,BE,Running,5,3,10\n")
    with pytest.raises(InputError) as e:
        load_job_trace(p, "alibaba-openb")
    assert "before scheduled_time" in e.value.what and e.value.where.endswith("line 3")
    p = write(tmp_path, "o2.csv", head + "p0,1,1,1,1000,,LS,Running,0,100,10\np1,1,1,1,460,,BE,Pending,5,30,\n"
                                         "p2,1,1,0,0,,BE,Running,5,30,6\n")
    jobs = load_job_trace(p, "alibaba-openb")
    assert [j.job_id for j in jobs] == ["p0"] and jobs[0].duration_s == 90


def test_helios_dates_and_skips(tmp_path):
    p = write(tmp_path, "h.csv",
              "job_id,user,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
              "j1,u1,8,1,1,COMPLETED,2020-04-01 00:00:10,2020-04-01 00:01:10,2020-04-01 01:01:10,3600,vc1\n"
              "j2,u2,0,1,1,COMPLETED,2020-04-01 00:00:20,2020-04-01 00:00:20,2020-04-01 00:10:20,600,vc1\n"
              "j3,u2,4,1,1,CANCELLED,2020-04-01 00:00:30,,,0,vc1\n"
              "j4,u3,16,1,2,FAILED,2020-04-01 00:00:00,2020-04-01 00:02:00,2020-04-01 00:12:00,600,vc2\n")
    jobs = load_job_trace(p, "helios")
    assert [(j.job_id, j.gpus, j.submit_s, j.duration_s, j.tenant) for j in jobs] == [
        ("j1", 8, 10.0, 3600.0, "u1"), ("j4", 16, 0.0, 600.0, "u3")]


def test_acme_type_is_kind_and_bad_date(tmp_path):
    p = write(tmp_path, "a.csv", "job_id,user,node_num,gpu_num,cpu_num,type,state,submit_time,start_time,end_time\n"
                                 "1,u,1,8,8,Pretrain,COMPLETED,2023-03-01 00:00:00,2023-03-01 00:00:05,2023-03-01 02:00:05\n"
                                 "2,u,1,8,8,SFT,COMPLETED,yesterday,2023-03-01 00:00:05,2023-03-01 02:00:05\n")
    with pytest.raises(InputError) as e:
        load_job_trace(p, "acme")
    assert "yesterday" in e.value.what and e.value.where.endswith("line 3")
    p.write_text(p.read_text().splitlines()[0] + "\n" + p.read_text().splitlines()[1] + "\n")
    (j,) = load_job_trace(p, "acme")
    assert j.kind == "pretrain" and j.duration_s == 7200


def test_philly_attempts(tmp_path):
    log = [
        {"jobid": "application_1", "vc": "vcA", "user": "x", "status": "Pass",
         "submitted_time": "2017-10-03 02:00:00",
         "attempts": [{"start_time": "2017-10-03 02:00:10", "end_time": "2017-10-03 02:10:10",
                       "detail": [{"ip": "m1", "gpus": ["gpu0", "gpu1"]}]},
                      {"start_time": "2017-10-03 03:00:00", "end_time": "2017-10-03 03:05:00",
                       "detail": [{"ip": "m1", "gpus": ["gpu0", "gpu1"]}, {"ip": "m2", "gpus": ["gpu0", "gpu1"]}]}]},
        {"jobid": "application_2", "vc": "vcB", "status": "Killed", "submitted_time": "2017-10-03 01:00:00",
         "attempts": []},
        {"jobid": "application_3", "vc": "vcB", "status": "Failed", "submitted_time": "2017-10-03 01:30:00",
         "attempts": [{"start_time": "2017-10-03 01:30:00", "end_time": None, "detail": [{"ip": "m", "gpus": ["g"]}]}]},
    ]
    p = write(tmp_path, "philly.json", json.dumps(log))
    (j,) = load_job_trace(p, "philly")
    assert (j.job_id, j.gpus, j.duration_s, j.tenant, j.kind, j.submit_s) == ("application_1", 4, 900.0, "vcA", "pass", 0.0)
    log[0]["submitted_time"] = None
    p.write_text(json.dumps(log))
    with pytest.raises(InputError) as e:
        load_job_trace(p, "philly")
    assert "submitted_time" in e.value.what and "job 1 (application_1)" in e.value.where
    p.write_text("[{\"jobid\": 1,,}]")
    with pytest.raises(InputError) as e:
        load_job_trace(p, "philly")
    assert "line 1" in e.value.where


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_job_trace(tmp_path / "nope.csv")
    p = write(tmp_path, "e.csv", "submit_s,duration_s,gpus\n")
    with pytest.raises(InputError, match="no rows"):
        load_job_trace(p)
