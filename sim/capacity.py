"""Capacity search: the smallest value of one scenario knob that meets every target.

``search(source, "cluster.nodes", ["inference.slo_attainment>=0.99",
"jobs.wait_p95_s<=1h"])`` answers "what is the smallest cluster that meets
the targets". Targets are ``METRIC OP VALUE`` over the metrics namespace of
``sim.sweep.metrics`` (OP one of >=, <=, >, <; a value may carry units:
``1h`` for a *_s metric, ``99%``).

The search assumes more of the knob never hurts (true of node counts with
common random numbers: every point uses the scenario's seed). It brackets
the answer (checks --max, or doubles from the scenario's own value until
the targets are met), then narrows the bracket: plain bisection with one
worker, with W workers W points per round (the bracket shrinks W+1-fold per
round). A point whose scenario does not load (a job larger than the
cluster) counts as not meeting the targets. Afterwards the table of points
tried is checked: where a failing point lies above a passing one the knob
is not monotone there, ``monotone`` is False and the answer may not be the
smallest; ``scan=True`` then tries every value in the range instead.

Knobs may be any numeric dotted key: ``cluster.nodes``, a pool's nodes
(``cluster.pools.1.nodes``: how many B200 nodes replace N H100 nodes), a
replica count; ``step`` sets the grid (1 for counts).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sim import sweep as sw
from workloads.errors import InputError, close_matches

OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
# Doublings tried from the scenario's own value when no --max is given:
# 10 reaches 1024x, beyond any what-if a planner asks.
MAX_DOUBLINGS = 10
_TARGET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(>=|<=|>|<)\s*(\S.*?)\s*$")


@dataclass
class Target:
    metric: str
    op: str
    value: float
    text: str

    def met(self, m: dict) -> bool:
        v = m.get(self.metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        return bool(OPS[self.op](float(v), self.value))

    @property
    def wants_more(self) -> bool:
        return self.op in (">=", ">")


def parse_target(text: str) -> Target:
    """'inference.slo_attainment>=0.99' / 'jobs.wait_p95_s<=1h' / '...>=99%'."""
    m = _TARGET.match(text or "")
    if not m:
        raise InputError(f"cannot read target {text!r}", "--target",
                         "write METRIC OP VALUE, e.g. 'inference.slo_attainment>=0.99' (OP: >=, <=, >, <)")
    metric, op, raw = m.groups()
    raw = raw.strip()
    try:
        if raw.endswith("%"):
            value = float(raw[:-1]) / 100.0
        elif metric.endswith("_s"):
            from workloads.units import parse_duration
            value = parse_duration(raw, "--target")
        else:
            from workloads.units import parse_count
            value = parse_count(raw, "--target")
    except (InputError, ValueError):
        raise InputError(f"cannot read the value {raw!r} of target {text!r}", "--target",
                         "give a number (units allowed for *_s metrics: 30m, 1h)") from None
    return Target(metric, op, float(value), f"{metric}{op}{raw}")


@dataclass
class CapacityResult:
    """value: the smallest value meeting every target (None when none did);
    table: one row per point tried, sorted by the knob."""
    vary: str
    value: Any
    targets: list[Target]
    table: pd.DataFrame
    monotone: bool = True
    notes: list[str] = field(default_factory=list)
    rounds: int = 0  # batches of points run one after the other

    def to_dict(self) -> dict:
        rows = self.table.astype(object).where(self.table.notna(), None).to_dict(orient="records")
        return {"vary": self.vary, "value": self.value, "met": self.value is not None, "monotone": self.monotone,
                "targets": [t.text for t in self.targets], "notes": self.notes, "rounds": self.rounds, "points": rows}


def _get_dotted(data, dotted: str):
    node = data
    for part in dotted.split("."):
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                return None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def current_value(source, dotted: str):
    """The knob's value in the scenario as written (None when absent)."""
    if isinstance(source, dict):
        data = source
    elif hasattr(source, "model_dump"):
        data = source.model_dump(mode="json")
    else:
        from workloads.files import read_yaml
        data = read_yaml(source, "scenario file")
    v = _get_dotted(data, dotted)
    if v is None and dotted.startswith("cluster.pools.") and isinstance(data.get("cluster"), dict):
        return None
    return v


class _Evaluator:
    """Runs points (in parallel batches) and remembers every one tried."""

    def __init__(self, src, vary, targets, fixed, outdir, backend, workers, address, progress, integer, runner):
        self.runner = runner
        self.src, self.vary, self.targets, self.fixed = src, vary, targets, fixed
        self.outdir, self.backend, self.workers, self.address = outdir, backend, workers, address
        self.progress, self.integer = progress, integer
        self.seen: dict[Any, dict] = {}
        self.rounds = 0

    def cast(self, x):
        return int(round(x)) if self.integer else float(x)

    def __call__(self, values) -> dict:
        todo = [v for v in dict.fromkeys(self.cast(x) for x in values) if v not in self.seen]
        if todo:
            self.rounds += 1
            tasks = []
            for v in todo:
                ov = {**self.fixed, self.vary: v}
                folder = str(Path(self.outdir) / sw.folder_name(len(self.seen) + len(tasks), {self.vary: v})) \
                    if self.outdir is not None else None
                tasks.append((self.src, ov, folder, folder is not None))
            results = sw.run_tasks(tasks, self.backend, self.workers, self.address, self.progress,
                                   fn=self.runner, desc=f"{self.vary}")
            for v, t, r in zip(todo, tasks, results):
                r = dict(r)
                r["_folder"] = Path(t[2]).name if t[2] else None
                self.check_metrics(r)
                r["_pass"] = "error" not in r and all(tg.met(r) for tg in self.targets)
                self.seen[v] = r
        return {self.cast(x): self.seen[self.cast(x)]["_pass"] for x in values}

    def check_metrics(self, r: dict) -> None:
        if "error" in r:
            return
        for t in self.targets:
            if t.metric not in r:
                near = close_matches(t.metric, [k for k in r if not k.startswith("_")], n=3)
                fix = ("did you mean " + " or ".join(repr(n) for n in near) + "?") if near else \
                    "see the metric names in sweep.csv or README (inference.slo_attainment, jobs.wait_p95_s, ...)"
                raise InputError(f"unknown metric {t.metric!r}", f"--target {t.text}", fix)


def search(source, vary: str, targets, lo=None, hi=None, step=None, fixed: dict | None = None, outdir=None,
           backend: str = "local", workers: int | None = None, address: str | None = None, progress: bool = False,
           scan: bool = False, runner=None) -> CapacityResult:
    """The smallest value of `vary` meeting every target (see the module docstring).

    runner(source, overrides, folder, save) -> metrics dict runs one point
    (default: sim.sweep.run_point, a full simulation)."""
    targets = [parse_target(t) if isinstance(t, str) else t for t in targets]
    if not targets:
        raise InputError("no targets", "--target", "give at least one, e.g. --target 'jobs.wait_p95_s<=1h'")
    fixed = dict(fixed or {})
    if vary in fixed:
        raise InputError(f"{vary!r} is both varied and set", "--set", f"drop --set {vary}=...")
    src = sw.source_for_workers(source)
    cur = current_value(src, vary)
    if cur is not None and (isinstance(cur, bool) or not isinstance(cur, (int, float))):
        raise InputError(f"{vary} is {cur!r}, not a number", "--vary", "vary a numeric key such as cluster.nodes")
    nums = [x for x in (lo, hi, step, cur) if x is not None]
    integer = all(float(x).is_integer() for x in nums)
    step = step if step is not None else 1
    if step <= 0:
        raise InputError(f"step is {step}", "--step", "give a step greater than zero")
    lo = lo if lo is not None else step
    if hi is not None and hi < lo:
        raise InputError(f"--max {hi} is below --min {lo}", "--max", "give --max >= --min")
    if hi is None and cur is None:
        raise InputError(f"the scenario has no {vary} to start from", "--vary", "give --max (and --min)")
    # schema errors (unknown key, wrong type) stop here, before any run
    probe = hi if hi is not None else max(cur, lo)
    sw.check_points(src, [{**fixed, vary: int(probe) if integer else float(probe)}], check=False)

    ev = _Evaluator(src, vary, targets, fixed, outdir, backend, workers, address, progress, integer,
                    runner or sw.run_point)
    if outdir is not None:
        Path(outdir).mkdir(parents=True, exist_ok=True)
    width = max(1, workers or 1)
    notes: list[str] = []

    def grid_index(x):  # knob value -> index on the lo + k*step grid
        return int(round((x - lo) / step))

    def value(k):
        return ev.cast(lo + k * step)

    answer = None
    if scan:
        if hi is None:
            hi = max(cur, lo)
            notes.append(f"scanned up to the scenario's value {hi}")
        ks = range(0, grid_index(hi) + 1)
        res = ev([value(k) for k in ks])
        passing = [v for v, ok in res.items() if ok]
        answer = min(passing) if passing else None
    else:
        # bracket: a failing index f (or -1) below a passing index p
        if hi is not None:
            khi = grid_index(hi)
            res = ev([value(0), value(khi)])
            if res[value(0)]:
                f, p = -1, 0
            elif res[value(khi)]:
                f, p = 0, khi
            else:
                f, p = khi, None
                notes.append(f"even --max {value(khi)} does not meet the targets")
        else:
            start = grid_index(max(cur, lo))
            res = ev([value(0), value(start)])
            if res[value(0)]:
                f, p = -1, 0
            elif res[value(start)]:
                f, p = 0, start
            else:
                # double the knob one point at a time: the large points are the
                # costly ones, so none is run speculatively
                f, p, k = start, None, start
                for _ in range(MAX_DOUBLINGS):
                    k = max(k + 1, grid_index(max(value(k), step) * 2))
                    if ev([value(k)])[value(k)]:
                        p = k
                        break
                    f = k
                if p is None:
                    notes.append(f"no value up to {value(f)} ({MAX_DOUBLINGS} doublings) meets the targets; "
                                 "give --max to search further")
        if p is not None:
            while p - f > 1:
                n = min(width, p - f - 1)
                ks = sorted({f + max(1, round((p - f) * (i + 1) / (n + 1))) for i in range(n)} - {p})
                res = ev([value(k) for k in ks])
                for k in ks:
                    if res[value(k)]:
                        p = min(p, k)
                for k in ks:
                    if not res[value(k)] and k < p:
                        f = max(f, k)
            answer = value(p)
    table = _table(ev, targets)
    monotone = _monotone(table)
    if not monotone:
        notes.append(f"the targets are not monotone in {vary} over the points tried: a larger value failed "
                     "where a smaller one passed; the answer may not be the smallest (try --scan)")
    errors = [r["error"] for r in ev.seen.values() if "error" in r]
    if answer is None and errors and len(errors) == len(ev.seen):
        raise InputError(f"no point could run: {errors[-1]}", f"--vary {vary}", "fix the scenario or the range")
    result = CapacityResult(vary, answer, targets, table, monotone, notes, ev.rounds)
    if outdir is not None:
        sw._write_csv(table, Path(outdir) / "capacity.csv")
    return result


def _table(ev: _Evaluator, targets: list[Target]) -> pd.DataFrame:
    rows = []
    for v in sorted(ev.seen):
        r = ev.seen[v]
        row: dict[str, Any] = {ev.vary: v, "meets_targets": r["_pass"]}
        for t in targets:
            row[t.metric] = r.get(t.metric, float("nan"))
        rows.append((row, r))
    metric_keys = sw.order_columns(k for _, r in rows for k in r if not k.startswith("_") and k != "error")
    out = []
    for row, r in rows:
        for k in metric_keys:
            row.setdefault(k, r.get(k, float("nan")))
        if r.get("_folder"):
            row["folder"] = r["_folder"]
        if any("error" in x for _, x in rows):
            row["error"] = r.get("error", "")
        out.append(row)
    return pd.DataFrame(out)


def _monotone(table: pd.DataFrame) -> bool:
    """False when a failing point lies above a passing one."""
    seen_pass = False
    for ok in table["meets_targets"] if not table.empty else []:
        if ok:
            seen_pass = True
        elif seen_pass:
            return False
    return True
