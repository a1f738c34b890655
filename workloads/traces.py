"""Inference request streams: who asks for how many tokens, and when.

A request stream is a table of arrivals (seconds), prompt lengths and output
lengths, optionally with Mooncake-style prefix-block hashes. It comes either
from a trace file (Azure LLM inference CSV, Mooncake JSON lines, or a plain
CSV) or from an arrival process (Poisson, gamma-bursty, with an optional
diurnal swing) with token counts drawn from a distribution. The request-level
serving simulation (``sim/requests.py``) replays it; nothing here knows about
hardware.

Every malformed row raises InputError naming the file and the line.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from workloads.errors import InputError, unknown_name
from workloads.files import read_text

TRACE_FORMATS = ("azure-llm", "mooncake", "csv")

MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per prefix-hash block in the Mooncake traces (Qin et al., "Mooncake:
A KVCache-centric Disaggregated Architecture for LLM Serving", FAST 2025, and
the trace README in kvcache-ai/Mooncake: one hash id per 512-token block)."""

MOONCAKE_TIME_UNIT_S = 1e-3
"""Mooncake trace timestamps are milliseconds from the start of the trace."""

DIURNAL_PEAK_HOUR = 14.0
"""Hour of the day (t = 0 is midnight) at which a diurnal profile peaks: the
early-afternoon peak of interactive traffic in published serving traces
(e.g. the Azure LLM inference traces, Patel et al., ISCA 2024)."""

# Header spellings accepted for each column (compared after lower-casing and
# removing spaces, underscores and dashes).
_TIME_NAMES = ("timestamp", "time", "arrival", "arrivals", "arrivaltime", "arrivals", "arrival_s",
               "arrivaltimes", "t", "ts", "submittime", "starttime")
_INPUT_NAMES = ("contexttokens", "inputtokens", "input", "inputlength", "inputlen", "prompttokens",
                "prompt", "promptlength", "prompttokencount", "contextlength", "requesttokens", "isl")
_OUTPUT_NAMES = ("generatedtokens", "outputtokens", "output", "outputlength", "outputlen",
                 "completiontokens", "completion", "responsetokens", "generated", "decodetokens", "osl")
_HASH_NAMES = ("hashids", "hashes", "blockhashes", "prefixhashes")


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).strip().lstrip("\ufeff").lower() if ch not in " _-")


_TIME_SET = {_norm(n) for n in _TIME_NAMES} | {"arrivals", "arrivalsec", "arrivalseconds"}
_INPUT_SET = {_norm(n) for n in _INPUT_NAMES}
_OUTPUT_SET = {_norm(n) for n in _OUTPUT_NAMES}
_HASH_SET = {_norm(n) for n in _HASH_NAMES}


@dataclass
class RequestTrace:
    """Requests sorted by arrival. arrival_s in seconds from the start of the
    stream; token counts are integers. hash_ids (Mooncake form) lists, per
    request, the ids of its prompt's blocks of `block_tokens` tokens; two
    requests share a cached prefix as far as their leading ids agree."""
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: Optional[list] = None
    block_tokens: int = MOONCAKE_BLOCK_TOKENS
    source: str = "synthetic"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.arrival_s = np.asarray(self.arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(self.input_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(self.output_tokens, dtype=np.int64)
        n = len(self.arrival_s)
        if len(self.input_tokens) != n or len(self.output_tokens) != n:
            raise InputError("a request trace needs as many input and output counts as arrivals", self.source,
                             "give one row per request")
        if self.hash_ids is not None and len(self.hash_ids) != n:
            raise InputError("hash_ids must have one entry per request", self.source, "give one list per request")
        if n and np.any(np.diff(self.arrival_s) < 0):
            order = np.argsort(self.arrival_s, kind="stable")
            self.arrival_s = self.arrival_s[order]
            self.input_tokens = self.input_tokens[order]
            self.output_tokens = self.output_tokens[order]
            if self.hash_ids is not None:
                self.hash_ids = [self.hash_ids[i] for i in order]

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last arrival."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) else 0.0

    def head(self, n: int) -> "RequestTrace":
        """The first n requests."""
        return RequestTrace(self.arrival_s[:n], self.input_tokens[:n], self.output_tokens[:n],
                            None if self.hash_ids is None else self.hash_ids[:n], self.block_tokens,
                            self.source, dict(self.meta))

    def to_frame(self):
        """A pandas DataFrame with arrival_s, input_tokens, output_tokens."""
        import pandas as pd
        return pd.DataFrame({"arrival_s": self.arrival_s, "input_tokens": self.input_tokens,
                             "output_tokens": self.output_tokens})


# ------------------------------------------------------------------ loading
def load_trace(path, format: str | None = None, time_scale: float = 1.0, limit: int | None = None,
               block_tokens: int = MOONCAKE_BLOCK_TOKENS) -> RequestTrace:
    """A RequestTrace from a file.

    format: 'azure-llm' (CSV TIMESTAMP,ContextTokens,GeneratedTokens; the
    timestamps are dates, made relative to the first row), 'mooncake' (JSON
    lines with timestamp in ms, input_length, output_length, hash_ids), or
    'csv' (arrival_s,input_tokens,output_tokens; times kept as written).
    None picks from the extension and the header. time_scale multiplies every
    arrival time (0.5 replays twice as fast); limit keeps the first n rows.
    """
    where = str(path)
    if format is not None and format not in TRACE_FORMATS:
        raise unknown_name("trace format", format, TRACE_FORMATS, where)
    if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0):
        raise InputError(f"time_scale {time_scale!r} must be a number greater than zero", where,
                         "use e.g. 1.0 (as recorded) or 0.5 (twice as fast)")
    if limit is not None and limit <= 0:
        raise InputError(f"limit {limit!r} must be at least 1", where, "give a positive row count")
    text = read_text(path, "trace file")
    if not text.strip():
        raise InputError(f"trace file {where!r} is empty", where, "give a file with a header and one row per request")
    fmt = format or detect_format(path, text)
    if fmt == "mooncake":
        trace = _load_mooncake(text, where, limit, block_tokens)
    else:
        trace = _load_csv(text, where, fmt, limit)
    if time_scale != 1.0:
        trace.arrival_s = trace.arrival_s * float(time_scale)
    trace.meta.update(format=fmt, time_scale=float(time_scale))
    return trace


def detect_format(path, text: str) -> str:
    """'mooncake' for .jsonl/.json or text starting with '{' or '[';
    'azure-llm' for a CSV whose time column holds dates; else 'csv'."""
    suffix = Path(str(path)).suffix.lower()
    head = text.lstrip("\ufeff \t\r\n")[:1]
    if suffix in (".jsonl", ".json", ".ndjson") or head in ("{", "["):
        return "mooncake"
    first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    cols = [_norm(c) for c in first.split(",")]
    if "timestamp" in cols and ("contexttokens" in cols or "generatedtokens" in cols):
        return "azure-llm"
    return "csv"


def _column(header: list[str], names: set, what: str, where: str, expected: str) -> int:
    for i, h in enumerate(header):
        if _norm(h) in names:
            return i
    raise InputError(f"no {what} column in the header {','.join(header)!r}", f"{where}, line 1",
                     f"name the columns {expected}")


def _load_csv(text: str, where: str, fmt: str, limit: int | None) -> RequestTrace:
    expected = ("TIMESTAMP,ContextTokens,GeneratedTokens" if fmt == "azure-llm"
                else "arrival_s,input_tokens,output_tokens")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = None
    for header in reader:
        if header and any(c.strip() for c in header) and not header[0].lstrip().startswith("#"):
            break
    else:
        header = None
    if not header:
        raise InputError(f"trace file {where!r} has no header", where, f"start it with '{expected}'")
    header_line = reader.line_num
    if all(_looks_numeric(c) for c in header if c.strip()):
        raise InputError("the first row holds numbers, not column names", f"{where}, line {header_line}",
                         f"start the file with the header '{expected}'")
    it = _column(header, _TIME_SET, "arrival time", where, expected)
    ii = _column(header, _INPUT_SET, "input (prompt) tokens", where, expected)
    io_ = _column(header, _OUTPUT_SET, "output (generated) tokens", where, expected)
    need = max(it, ii, io_) + 1
    times: list[str] = []
    ins: list[int] = []
    outs: list[int] = []
    lines: list[int] = []
    for row in reader:
        if not row or not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        line = reader.line_num
        if len(row) < need:
            raise InputError(f"row has {len(row)} fields, the header names at least {need}", f"{where}, line {line}",
                             f"give {expected} on every row")
        ins.append(_tokens(row[ii], header[ii], where, line, minimum=1))
        outs.append(_tokens(row[io_], header[io_], where, line, minimum=0))
        times.append(row[it].strip())
        lines.append(line)
        if limit is not None and len(ins) >= limit:
            break
    if not ins:
        raise InputError(f"trace file {where!r} has a header but no requests", where, "add one row per request")
    arrival = _times(times, lines, header[it], where, fmt)
    return RequestTrace(arrival, np.array(ins, dtype=np.int64), np.array(outs, dtype=np.int64),
                        source=where, meta={"lines": len(ins)})


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _tokens(cell, column: str, where: str, line: int, minimum: int) -> int:
    raw = cell.strip() if isinstance(cell, str) else cell
    if raw == "" or raw is None:
        raise InputError(f"{column} is missing", f"{where}, line {line}", "give a whole number of tokens")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InputError(f"{column} {raw!r} is not a number", f"{where}, line {line}",
                         "give a whole number of tokens") from None
    if not math.isfinite(value) or value != int(value):
        raise InputError(f"{column} {raw!r} is not a whole number", f"{where}, line {line}",
                         "give a whole number of tokens")
    if value < minimum:
        need = "at least 1" if minimum == 1 else "zero or more"
        raise InputError(f"{column} is {int(value)}", f"{where}, line {line}", f"token counts must be {need}")
    return int(value)


def _times(cells: list[str], lines: list[int], column: str, where: str, fmt: str) -> np.ndarray:
    """Seconds: plain numbers kept as written (csv), dates made relative to
    the first row (any format)."""
    for cell, line in zip(cells, lines):
        if cell == "":
            raise InputError(f"{column} is missing", f"{where}, line {line}", "give an arrival time on every row")
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        values = None
    if values is not None:
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            k = int(np.argmax(bad))
            raise InputError(f"{column} {cells[k]!r} must be a finite time of zero or more", f"{where}, line {lines[k]}",
                             "give seconds (csv) or a date-time (azure-llm)")
        if fmt == "azure-llm":
            values = values - values.min()
        return values
    cleaned = [c[:-1] if c.endswith(("Z", "z")) else c for c in cells]
    try:
        stamps = np.array(cleaned, dtype="datetime64[ns]")
    except ValueError:
        for cell, line in zip(cleaned, lines):
            try:
                np.datetime64(cell, "ns")
            except ValueError:
                raise InputError(f"cannot read {column} {cell!r} as a time", f"{where}, line {line}",
                                 "write e.g. 2023-11-16 18:15:46.680 or seconds as a number") from None
        raise InputError(f"cannot read the {column} column as times", where, "write dates or seconds")  # pragma: no cover
    if np.isnat(stamps).any():
        k = int(np.argmax(np.isnat(stamps)))
        raise InputError(f"cannot read {column} {cells[k]!r} as a time", f"{where}, line {lines[k]}",
                         "write e.g. 2023-11-16 18:15:46.680")
    ns = (stamps - stamps.min()).astype(np.int64)
    return ns.astype(np.float64) * 1e-9


def _load_mooncake(text: str, where: str, limit: int | None, block_tokens: int) -> RequestTrace:
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"JSON syntax error: {exc.msg}", f"{where}, line {exc.lineno}", "fix the JSON there") from None
        if not isinstance(items, list):
            raise InputError("a JSON trace must be a list of request objects", where, "use JSON lines")
        rows = [(f"item {i + 1}", obj) for i, obj in enumerate(items)]
    else:
        rows = []
        for n, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            try:
                rows.append((f"line {n}", json.loads(s)))
            except json.JSONDecodeError as exc:
                raise InputError(f"not a JSON object: {exc.msg}", f"{where}, line {n}",
                                 'write one object per line, e.g. {"timestamp": 0, "input_length": 512, '
                                 '"output_length": 64, "hash_ids": [0]}') from None
            if limit is not None and len(rows) >= limit:
                break
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise InputError(f"trace file {where!r} holds no requests", where, "write one JSON object per request")
    times = np.empty(len(rows))
    ins = np.empty(len(rows), dtype=np.int64)
    outs = np.empty(len(rows), dtype=np.int64)
    hashes: list = []
    any_hash = False
    for k, (loc, obj) in enumerate(rows):
        at = f"{where}, {loc}"
        if not isinstance(obj, dict):
            raise InputError("a request must be a JSON object", at, "write {\"timestamp\": ..., ...}")
        keys = {_norm(key): key for key in obj}
        t_key = next((keys[n] for n in ("timestamp", "arrivalms", "time") if n in keys), None)
        i_key = next((keys[n] for n in keys if n in _INPUT_SET), None)
        o_key = next((keys[n] for n in keys if n in _OUTPUT_SET), None)
        for key, name in ((t_key, "timestamp"), (i_key, "input_length"), (o_key, "output_length")):
            if key is None:
                raise InputError(f"the request has no {name!r}", at, "give timestamp, input_length and output_length")
        t = obj[t_key]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise InputError(f"timestamp {t!r} must be a number of milliseconds, zero or more", at,
                             "give milliseconds from the start of the trace")
        times[k] = float(t) * MOONCAKE_TIME_UNIT_S
        ins[k] = _json_tokens(obj[i_key], i_key, at, 1)
        outs[k] = _json_tokens(obj[o_key], o_key, at, 0)
        h_key = next((keys[n] for n in keys if n in _HASH_SET), None)
        h = obj.get(h_key) if h_key else None
        if h is None:
            hashes.append(())
        else:
            if not isinstance(h, list) or any(isinstance(x, bool) or not isinstance(x, (int, str)) for x in h):
                raise InputError(f"{h_key} must be a list of block ids", at, "write e.g. [0, 1, 2]")
            hashes.append(tuple(h))
            any_hash = True
    return RequestTrace(times, ins, outs, hashes if any_hash else None, block_tokens, where,
                        {"lines": len(rows)})


def _json_tokens(value, key: str, at: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise InputError(f"{key} {value!r} is not a whole number", at, "give a whole number of tokens")
    if value < minimum:
        need = "at least 1" if minimum == 1 else "zero or more"
        raise InputError(f"{key} is {int(value)}", at, f"token counts must be {need}")
    return int(value)


def save_trace(trace: RequestTrace, path) -> None:
    """Write a trace as the plain csv format (arrival_s,input_tokens,output_tokens)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("arrival_s,input_tokens,output_tokens\n")
        for t, i, o in zip(trace.arrival_s, trace.input_tokens, trace.output_tokens):
            fh.write(f"{t:.6f},{int(i)},{int(o)}\n")


# ---------------------------------------------------------- arrival processes
def diurnal_multiplier(t_s, amplitude: float, peak_hour: float = DIURNAL_PEAK_HOUR,
                       period_s: float = 86400.0):
    """Rate multiplier of a daily cycle: 1 + amplitude * cos(2 pi (t - peak) / day),
    averaging 1 over a day; t = 0 is midnight."""
    t = np.asarray(t_s, dtype=np.float64)
    return 1.0 + amplitude * np.cos(2.0 * np.pi * (t - peak_hour * 3600.0) / period_s)


def _diurnal_integral(t, amplitude: float, peak_hour: float, period_s: float):
    """Integral of diurnal_multiplier from 0 to t (closed form)."""
    w = 2.0 * np.pi / period_s
    p = peak_hour * 3600.0
    return t + amplitude / w * (np.sin(w * (t - p)) - np.sin(-w * p))


def arrival_times(requests_per_s: float, rng: np.random.Generator, *, duration_s: float | None = None,
                  count: int | None = None, process: str = "poisson", cv: float = 1.0,
                  diurnal: float = 0.0, start_s: float = 0.0, peak_hour: float = DIURNAL_PEAK_HOUR,
                  where: str = "arrival") -> np.ndarray:
    """Arrival times in [0, duration_s) (or the first `count`), seconds from
    the start of the stream.

    process 'poisson': exponential gaps; 'gamma': gamma gaps with coefficient
    of variation `cv` (cv > 1 is burstier than Poisson, cv = 1 is Poisson).
    diurnal (0..1) modulates the rate as diurnal_multiplier, with the stream
    starting at `start_s` seconds after midnight; requests_per_s stays the
    daily mean. The modulation is applied by time-rescaling a unit-rate
    renewal process, so gamma burstiness and the daily cycle combine.
    """
    if not (requests_per_s > 0 and math.isfinite(requests_per_s)):
        raise InputError(f"requests_per_s is {requests_per_s!r}", where, "give a rate greater than zero")
    if process not in ("poisson", "gamma"):
        raise unknown_name("arrival process", process, ("poisson", "gamma"), where)
    if not cv > 0:
        raise InputError(f"cv is {cv!r}", where, "give a coefficient of variation greater than zero")
    if not 0 <= diurnal <= 1:
        raise InputError(f"diurnal is {diurnal!r}", where, "give an amplitude between 0 and 1")
    if duration_s is None and count is None:
        raise InputError("an arrival process needs a duration or a request count", where,
                         "set 'duration' (or give a trace)")
    if duration_s is not None and not duration_s > 0:
        raise InputError(f"duration is {duration_s!r}", where, "give a duration greater than zero")

    def gaps(n: int) -> np.ndarray:  # unit-mean gaps
        if process == "gamma" and cv != 1.0:
            shape = 1.0 / (cv * cv)
            return rng.gamma(shape, 1.0 / shape, size=n)
        return rng.exponential(1.0, size=n)

    # operational time u (unit rate); real time follows from u = rate * Lambda(t)
    if duration_s is not None:
        u_end = requests_per_s * (float(_diurnal_integral(start_s + duration_s, diurnal, peak_hour, 86400.0)
                                        - _diurnal_integral(start_s, diurnal, peak_hour, 86400.0))
                                  if diurnal else duration_s)
        chunks, total, last = [], 0, 0.0
        batch = max(16, int(u_end * 1.1 + 10 * math.sqrt(u_end + 1) * max(1.0, cv)))
        while last < u_end and (count is None or total < count):
            u = last + np.cumsum(gaps(batch))
            chunks.append(u)
            total += len(u)
            last = float(u[-1])
        u = np.concatenate(chunks) if chunks else np.empty(0)
        u = u[u < u_end]
    else:
        u = np.cumsum(gaps(int(count)))
    if count is not None:
        u = u[:count]
    if not diurnal:
        return u / requests_per_s
    # invert Lambda numerically on a fine grid (Lambda is increasing: amplitude <= 1)
    horizon = (duration_s if duration_s is not None else
               float(u[-1]) / requests_per_s / max(1e-3, 1.0 - diurnal) + 86400.0) if len(u) else 1.0
    grid = np.linspace(0.0, horizon, max(2, int(horizon / 60.0) + 2))
    lam = requests_per_s * (_diurnal_integral(start_s + grid, diurnal, peak_hour, 86400.0)
                            - _diurnal_integral(start_s, diurnal, peak_hour, 86400.0))
    return np.interp(u, lam, grid)


# ------------------------------------------------------------ token counts
def _get(dist, key, default=None):
    if isinstance(dist, dict):
        return dist.get(key, default)
    return getattr(dist, key, default)


def sample_tokens(dist, n: int, rng: np.random.Generator, where: str = "tokens",
                  base_dir: str | None = None, role: str = "input") -> np.ndarray:
    """n whole token counts (>= 1) from `dist`: a number (every request the
    same), or a mapping / object with `distribution` 'fixed' (mean),
    'lognormal' (mean and sigma of the log; the median is
    mean * exp(-sigma^2 / 2)) or 'empirical' (resampled from `column` of the
    trace file `path`; column defaults to this role's column, input or
    output). With thinking and answer (a reasoning model's output), each
    part follows the distribution with its own mean
    (workloads.reasoning.output_from_spec) and the count is their sum."""
    if not isinstance(dist, (int, float, str)) and (_get(dist, "thinking") is not None
                                                    or _get(dist, "answer") is not None) \
            and (_get(dist, "distribution", "fixed") or "fixed") != "empirical":
        from workloads.reasoning import output_from_spec
        think, answer = output_from_spec(dist, where).sample(rng, n)
        return np.maximum(1, think + answer).astype(np.int64)
    if isinstance(dist, (int, float)) and not isinstance(dist, bool):
        mean, kind, sigma = float(dist), "fixed", 0.0
    elif isinstance(dist, str):
        from workloads.units import parse_count
        mean, kind, sigma = parse_count(dist, where), "fixed", 0.0
    else:
        kind = _get(dist, "distribution", "fixed") or "fixed"
        mean = _get(dist, "mean")
        if mean is None and (_get(dist, "thinking") is not None or _get(dist, "answer") is not None):
            mean = float(_get(dist, "thinking") or 0) + float(_get(dist, "answer") or 0)
        sigma = float(_get(dist, "sigma", 0.8) or 0.8)
    if kind == "empirical":
        path = _get(dist, "path")
        if not path:
            raise InputError("an empirical distribution needs 'path'", where, "give a trace file")
        if base_dir and not Path(path).is_absolute():
            path = str(Path(base_dir) / path)
        trace = load_trace(path)
        column = _get(dist, "column") or role
        key = _norm(column)
        if key in _INPUT_SET or key == "input":
            pool = trace.input_tokens
        elif key in _OUTPUT_SET or key == "output":
            pool = trace.output_tokens
        else:
            raise InputError(f"unknown column {column!r} for an empirical token distribution", where,
                             "use input_tokens or output_tokens (or the file's own names for them)")
        return rng.choice(np.maximum(pool, 1), size=n, replace=True).astype(np.int64)
    if mean is None or not (float(mean) >= 1 and math.isfinite(float(mean))):
        raise InputError(f"token mean is {mean!r}", where, "give a mean of at least 1 token")
    mean = float(mean)
    if kind == "fixed":
        return np.full(n, max(1, int(round(mean))), dtype=np.int64)
    if kind == "lognormal":
        mu = math.log(mean) - sigma * sigma / 2.0
        draws = rng.lognormal(mu, sigma, size=n)
        return np.maximum(1, np.rint(draws)).astype(np.int64)
    if kind == "exponential":
        return np.maximum(1, np.rint(rng.exponential(mean, size=n))).astype(np.int64)
    raise unknown_name("token distribution", kind, ("fixed", "lognormal", "empirical", "exponential"), where)


def synthetic_trace(requests_per_s: float, input_tokens, output_tokens, rng: np.random.Generator, *,
                    duration_s: float | None = None, count: int | None = None, process: str = "poisson",
                    cv: float = 1.0, diurnal: float = 0.0, start_s: float = 0.0,
                    base_dir: str | None = None, where: str = "workload") -> RequestTrace:
    """A request stream from an arrival process and token distributions
    (see arrival_times and sample_tokens)."""
    arrivals = arrival_times(requests_per_s, rng, duration_s=duration_s, count=count, process=process, cv=cv,
                             diurnal=diurnal, start_s=start_s, where=f"{where}.arrival")
    n = len(arrivals)
    ins = sample_tokens(input_tokens, n, rng, f"{where}.input_tokens", base_dir, "input")
    outs = sample_tokens(output_tokens, n, rng, f"{where}.output_tokens", base_dir, "output")
    return RequestTrace(arrivals, ins, outs, source="synthetic",
                        meta={"process": process, "requests_per_s": requests_per_s, "cv": cv, "diurnal": diurnal})


def concat_traces(traces: Sequence[RequestTrace]) -> RequestTrace:
    """Merge several streams into one, sorted by arrival."""
    hashes: Any = None
    if any(t.hash_ids is not None for t in traces):
        hashes = [h for t in traces for h in (t.hash_ids if t.hash_ids is not None else [()] * len(t))]
    return RequestTrace(np.concatenate([t.arrival_s for t in traces]),
                        np.concatenate([t.input_tokens for t in traces]),
                        np.concatenate([t.output_tokens for t in traces]), hashes,
                        traces[0].block_tokens if traces else MOONCAKE_BLOCK_TOKENS, "merged")
