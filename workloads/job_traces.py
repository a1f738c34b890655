"""Cluster job traces: what real GPU clusters were asked to run, as Jobs.

Formats (``format:`` of a ``family: trace`` workload):

- ``csv``: a header with ``submit_s,duration_s,gpus`` (required) and
  optionally ``job_id,family,kind,tenant,priority,pool``. Times in seconds.
- ``alibaba-openb``: the Alibaba cluster-trace-gpu-v2023 pod list
  (``name,...,num_gpu,gpu_milli,...,qos,pod_phase,creation_time,
  deletion_time,scheduled_time``). Submit = creation, duration = deletion -
  scheduled. A pod sharing a GPU (gpu_milli < 1000) takes a whole GPU here
  (GPU sharing is not modelled); CPU-only pods (num_gpu 0) and pods never
  scheduled (Pending) are skipped. QoS becomes the kind and the priority
  (Guaranteed and LS 2, Burstable 1, BE 0).
- ``helios`` / ``acme``: Helios (SenseTime, SC'21) and Acme (Shanghai AI
  Lab, NSDI'24) job logs, ``job_id,user,gpu_num,node_num,state,submit_time,
  start_time,end_time,...`` with times as date-times or seconds. Duration =
  end - start (or the ``duration`` column); user = tenant; Acme's ``type``
  = kind. Jobs without GPUs or that never started are skipped.
- ``philly``: Microsoft Philly ``cluster_job_log`` (JSON list of jobs with
  ``attempts``, each with start/end times and ``detail`` listing GPUs per
  machine). GPUs = the most any attempt held, duration = the sum of the
  attempts' run times, tenant = the virtual cluster (``vc``).

Submit times are made relative to the earliest one in the file (csv keeps
them as written) and multiplied by ``time_scale``; durations are taken as
given. A row with a missing, negative or unparseable value raises
InputError naming the file and the line (for Philly: the job's position and
id).
"""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone

from workloads.errors import InputError, unknown_name
from workloads.files import read_text
from workloads.jobs import Job

JOB_TRACE_FORMATS = ("csv", "alibaba-openb", "helios", "acme", "philly")

OPENB_QOS_PRIORITY = {"guaranteed": 2, "ls": 2, "burstable": 1, "be": 0}
"""Kubernetes QoS classes of the openb pods as scheduling priorities:
latency-sensitive and guaranteed pods above burstable above best-effort."""


def load_job_trace(path, format: str = "csv", time_scale: float = 1.0, limit: int | None = None, *,
                   family: str = "trace", tenant: str | None = None, priority: int | None = None,
                   pool: str | None = None, workload: str | None = None, id_prefix: str = "") -> list[Job]:
    """Jobs from a cluster trace file (see the module doc). tenant, priority
    and pool are defaults for rows that do not give their own; limit keeps
    the first n jobs (in file order)."""
    where = str(path)
    if format not in JOB_TRACE_FORMATS:
        raise unknown_name("job trace format", format, JOB_TRACE_FORMATS, where)
    if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0):
        raise InputError(f"time_scale {time_scale!r} must be greater than zero", where, "use e.g. 1.0")
    text = read_text(path, "job trace")
    if not text.strip():
        raise InputError(f"job trace {where!r} is empty", where, "give a file with a header and one row per job")
    defaults = dict(family=family, tenant=tenant or "default", priority=priority or 0, pool=pool,
                    workload=workload, prefix=id_prefix)
    if format == "csv":
        jobs = _csv(text, where, limit, defaults)
    elif format == "alibaba-openb":
        jobs = _openb(text, where, limit, defaults)
    elif format in ("helios", "acme"):
        jobs = _helios(text, where, limit, defaults)
    else:
        jobs = _philly(text, where, limit, defaults)
    if time_scale != 1.0:
        for j in jobs:
            j.submit_s *= float(time_scale)
    return jobs


# ---------------------------------------------------------------- helpers
def _rows(text: str, where: str):
    """(header, [(line, cells)]) of a CSV text; lines count from 1."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"job trace {where!r} has no header", where, "write a header line") from None
    header = [h.strip().lower() for h in header]
    rows = []
    for cells in reader:
        if not cells or all(not c.strip() for c in cells):
            continue
        rows.append((reader.line_num, cells))
    if not rows:
        raise InputError(f"job trace {where!r} has a header but no rows", where, "add one row per job")
    return header, rows


def _col(header: list[str], names, where: str, required: bool = True):
    for name in names:
        if name in header:
            return header.index(name)
    if required:
        raise InputError(f"the header has no {names[0]!r} column", where,
                         "columns found: " + ", ".join(header))
    return None


def _cell(cells: list[str], idx, line: int, where: str, column: str, required: bool = True) -> str | None:
    raw = cells[idx].strip() if idx is not None and idx < len(cells) else ""
    if raw == "":
        if required:
            raise InputError(f"{column} is missing", f"{where}, line {line}", f"give {column} on every row")
        return None
    return raw


def _number(raw: str, line: int, where: str, column: str, whole: bool = False, minimum: float = 0.0) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise InputError(f"{column} {raw!r} is not a number", f"{where}, line {line}", f"write {column} as a number") from None
    if not math.isfinite(v):
        raise InputError(f"{column} {raw!r} is not finite", f"{where}, line {line}", f"write a finite {column}")
    if v < minimum:
        raise InputError(f"{column} is {raw}", f"{where}, line {line}",
                         f"{column} must be {'at least ' + format(minimum, 'g') if minimum else 'zero or more'}")
    if whole and v != int(v):
        raise InputError(f"{column} {raw!r} is not a whole number", f"{where}, line {line}", f"write a whole {column}")
    return v


def _time(raw: str, place: str, column: str) -> float:
    """Seconds from a number or a date-time (naive = UTC); place names the
    file and line (or job) in errors."""
    try:
        v = float(raw)
    except ValueError:
        v = None
    if v is not None:
        if not math.isfinite(v) or v < 0:
            raise InputError(f"{column} {raw!r} must be a finite time of zero or more", place,
                             "write seconds or a date-time")
        return v
    text = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"cannot read {column} {raw!r} as a time", place,
                         "write e.g. 2020-04-01 08:00:26 or seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _make(defaults: dict, job_id: str, gpus: int, submit: float, duration: float, **row) -> Job:
    return Job(job_id=job_id, family=row.get("family") or defaults["family"], kind=row.get("kind") or "trace",
               gpus=gpus, submit_s=submit, duration_s=duration,
               tenant=row.get("tenant") or defaults["tenant"],
               priority=row["priority"] if row.get("priority") is not None else defaults["priority"],
               pool=row.get("pool") or defaults["pool"], workload=defaults["workload"])


def _relative(jobs: list[Job]) -> list[Job]:
    if jobs:
        t0 = min(j.submit_s for j in jobs)
        for j in jobs:
            j.submit_s -= t0
    return jobs


# ---------------------------------------------------------------- formats
def _csv(text: str, where: str, limit, defaults) -> list[Job]:
    header, rows = _rows(text, where)
    c_sub = _col(header, ("submit_s",), where)
    c_dur = _col(header, ("duration_s",), where)
    c_gpu = _col(header, ("gpus",), where)
    opt = {name: _col(header, (name,), where, required=False)
           for name in ("job_id", "family", "kind", "tenant", "priority", "pool")}
    jobs = []
    for line, cells in rows:
        if limit is not None and len(jobs) >= limit:
            break
        submit = _number(_cell(cells, c_sub, line, where, "submit_s"), line, where, "submit_s")
        duration = _number(_cell(cells, c_dur, line, where, "duration_s"), line, where, "duration_s")
        gpus = int(_number(_cell(cells, c_gpu, line, where, "gpus"), line, where, "gpus", whole=True, minimum=1))
        extra = {k: _cell(cells, i, line, where, k, required=False) for k, i in opt.items()}
        prio = extra.pop("priority")
        if prio is not None:
            try:
                extra["priority"] = int(prio)
            except ValueError:
                raise InputError(f"priority {prio!r} is not a whole number", f"{where}, line {line}",
                                 "write an integer priority (higher runs first)") from None
        job_id = extra.pop("job_id") or f"{defaults['prefix']}{line}"
        jobs.append(_make(defaults, job_id, gpus, submit, duration, **extra))
    return jobs


def _openb(text: str, where: str, limit, defaults) -> list[Job]:
    header, rows = _rows(text, where)
    c_name = _col(header, ("name",), where)
    c_gpu = _col(header, ("num_gpu",), where)
    c_qos = _col(header, ("qos",), where, required=False)
    c_phase = _col(header, ("pod_phase",), where, required=False)
    c_create = _col(header, ("creation_time",), where)
    c_del = _col(header, ("deletion_time",), where)
    c_sched = _col(header, ("scheduled_time",), where)
    jobs = []
    for line, cells in rows:
        if limit is not None and len(jobs) >= limit:
            break
        gpus = _number(_cell(cells, c_gpu, line, where, "num_gpu"), line, where, "num_gpu", whole=True)
        phase = (_cell(cells, c_phase, line, where, "pod_phase", required=False) or "").lower()
        sched_raw = _cell(cells, c_sched, line, where, "scheduled_time", required=False)
        if gpus == 0 or (sched_raw is None and phase == "pending"):
            continue
        if sched_raw is None:
            raise InputError("scheduled_time is missing", f"{where}, line {line}",
                             "give scheduled_time for every pod that ran")
        create = _number(_cell(cells, c_create, line, where, "creation_time"), line, where, "creation_time")
        sched = _number(sched_raw, line, where, "scheduled_time")
        delete = _number(_cell(cells, c_del, line, where, "deletion_time"), line, where, "deletion_time")
        if delete < sched:
            raise InputError(f"deletion_time {delete:g} is before scheduled_time {sched:g}", f"{where}, line {line}",
                             "fix the pod's times")
        qos = (_cell(cells, c_qos, line, where, "qos", required=False) or "").strip()
        jobs.append(_make(defaults, _cell(cells, c_name, line, where, "name"), int(gpus), create, delete - sched,
                          kind=qos.lower() or None, priority=OPENB_QOS_PRIORITY.get(qos.lower())))
    return _relative(jobs)


def _helios(text: str, where: str, limit, defaults) -> list[Job]:
    header, rows = _rows(text, where)
    c_id = _col(header, ("job_id", "jobid", "id"), where, required=False)
    c_user = _col(header, ("user", "user_id"), where, required=False)
    c_gpu = _col(header, ("gpu_num", "gpus", "num_gpu"), where)
    c_sub = _col(header, ("submit_time",), where)
    c_start = _col(header, ("start_time",), where, required=False)
    c_end = _col(header, ("end_time",), where, required=False)
    c_dur = _col(header, ("duration",), where, required=False)
    c_type = _col(header, ("type", "job_type"), where, required=False)
    if c_dur is None and (c_start is None or c_end is None):
        raise InputError("the header needs start_time and end_time (or duration)", where,
                         "columns found: " + ", ".join(header))
    jobs = []
    for line, cells in rows:
        if limit is not None and len(jobs) >= limit:
            break
        gpus = _number(_cell(cells, c_gpu, line, where, "gpu_num"), line, where, "gpu_num", whole=True)
        if gpus == 0:
            continue
        submit = _time(_cell(cells, c_sub, line, where, "submit_time"), f"{where}, line {line}", "submit_time")
        start_raw = _cell(cells, c_start, line, where, "start_time", required=False)
        end_raw = _cell(cells, c_end, line, where, "end_time", required=False)
        if start_raw is None and c_start is not None:
            continue  # never started (cancelled in the queue)
        if start_raw is not None and end_raw is not None:
            start = _time(start_raw, f"{where}, line {line}", "start_time")
            end = _time(end_raw, f"{where}, line {line}", "end_time")
            if end < start:
                raise InputError(f"end_time {end_raw!r} is before start_time {start_raw!r}", f"{where}, line {line}",
                                 "fix the job's times")
            duration = end - start
        elif c_dur is not None and _cell(cells, c_dur, line, where, "duration", required=False) is not None:
            duration = _number(_cell(cells, c_dur, line, where, "duration"), line, where, "duration")
        else:
            raise InputError("end_time is missing", f"{where}, line {line}", "give end_time or duration")
        job_id = _cell(cells, c_id, line, where, "job_id", required=False) or f"{defaults['prefix']}{line}"
        jobs.append(_make(defaults, job_id, int(gpus), submit, duration,
                          tenant=_cell(cells, c_user, line, where, "user", required=False),
                          kind=(_cell(cells, c_type, line, where, "type", required=False) or "").lower() or None))
    return _relative(jobs)


def _philly(text: str, where: str, limit, defaults) -> list[Job]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"JSON syntax error: {exc.msg}", f"{where}, line {exc.lineno}", "fix the JSON at that line") from None
    if isinstance(data, dict):
        data = data.get("cluster_job_log", data.get("jobs"))
    if not isinstance(data, list):
        raise InputError("a Philly job log must be a JSON list of jobs", where, "give cluster_job_log")
    jobs = []
    for k, entry in enumerate(data):
        if limit is not None and len(jobs) >= limit:
            break
        job_id = str(entry.get("jobid", k)) if isinstance(entry, dict) else str(k)
        at = f"{where}, job {k + 1} ({job_id})"
        if not isinstance(entry, dict):
            raise InputError("a job must be a JSON object", at, "give jobid, submitted_time and attempts")
        submitted = entry.get("submitted_time")
        if submitted in (None, "", "None"):
            raise InputError("submitted_time is missing", at, "give submitted_time")
        submit = _time(str(submitted), at, "submitted_time")
        attempts = entry.get("attempts")
        if not isinstance(attempts, list):
            raise InputError("attempts is missing", at, "give the job's attempts (a list)")
        duration, gpus = 0.0, 0
        for a in attempts:
            if not isinstance(a, dict):
                raise InputError("an attempt must be a JSON object", at, "give start_time, end_time and detail")
            s, e = a.get("start_time"), a.get("end_time")
            if s in (None, "", "None") or e in (None, "", "None"):
                continue  # an attempt that never ran (or is still running in the log)
            t0 = _time(str(s), at, "start_time")
            t1 = _time(str(e), at, "end_time")
            if t1 < t0:
                raise InputError(f"an attempt ends ({e}) before it starts ({s})", at, "fix the attempt's times")
            duration += t1 - t0
            held = 0
            for d in a.get("detail") or []:
                g = d.get("gpus") if isinstance(d, dict) else None
                if not isinstance(g, list):
                    raise InputError("an attempt's detail lacks its gpus list", at, "give detail: [{ip, gpus: [...]}]")
                held += len(g)
            gpus = max(gpus, held)
        if gpus == 0:
            continue  # never ran on a GPU
        jobs.append(_make(defaults, job_id, gpus, submit, duration, tenant=entry.get("vc"),
                          kind=str(entry.get("status") or "").lower() or None))
    return _relative(jobs)
