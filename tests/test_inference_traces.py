"""Inference request traces and arrival processes (workloads/traces.py)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.requests import SAMPLE_TRACE
from workloads.errors import InputError
from workloads.traces import (RequestTrace, arrival_times, detect_format, diurnal_multiplier, load_trace,
                              sample_tokens, save_trace, synthetic_trace)

REAL_TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure_llm_inference_2023_conv.csv"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------ real data
def test_shipped_azure_sample_loads_as_recorded():
    tr = load_trace(SAMPLE_TRACE)
    assert tr.meta["format"] == "azure-llm"
    assert len(tr) == 2000
    assert tr.arrival_s[0] == 0.0
    assert np.all(np.diff(tr.arrival_s) >= 0)
    # first rows of the file: 18:15:46.6805900,374,44 / 18:15:50.9951690,396,109
    assert tr.input_tokens[:2].tolist() == [374, 396]
    assert tr.output_tokens[:2].tolist() == [44, 109]
    assert tr.arrival_s[1] == pytest.approx(50.9951690 - 46.6805900, abs=1e-6)
    # last row 18:22:50.9400470: 7 min 4.26 s after the first
    assert tr.span_s == pytest.approx(7 * 60 + 50.9400470 - 46.6805900, abs=1e-6)


@pytest.mark.skipif(not REAL_TRACE.exists(), reason="shared Azure conversation trace not present")
def test_full_azure_conversation_trace_loads():
    tr = load_trace(REAL_TRACE, "azure-llm")
    assert len(tr) == 19366
    assert 3400 < tr.span_s < 3600          # one hour of traffic
    assert tr.input_tokens.min() >= 1 and tr.output_tokens.min() >= 1
    assert 1000 < tr.input_tokens.mean() < 1300 and 180 < tr.output_tokens.mean() < 240


# ----------------------------------------------------------- header variations
@pytest.mark.parametrize("header,row", [
    ("TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:15:46.68,10,5"),
    ("timestamp, context_tokens , generated_tokens", "2023-11-16 18:15:46.68,10,5"),
    ("\ufeffTIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16T18:15:46.68Z,10,5"),
    ("GeneratedTokens,TIMESTAMP,ContextTokens", "5,2023-11-16 18:15:46.68,10"),
    ("arrival_s,input_tokens,output_tokens,user", "0,10,5,alice"),
    ("Arrival Time,Prompt Tokens,Completion Tokens", "0.0,10,5"),
    ("time,input_length,output_length", "0,10.0,5"),
])
def test_header_spellings(tmp_path, header, row):
    p = write(tmp_path, "t.csv", f"{header}\n{row}\n")
    tr = load_trace(p)
    assert (tr.input_tokens.tolist(), tr.output_tokens.tolist(), tr.arrival_s.tolist()) == ([10], [5], [0.0])


def test_comments_blank_lines_and_crlf(tmp_path):
    p = write(tmp_path, "t.csv", "# made by hand\r\narrival_s,input_tokens,output_tokens\r\n\r\n1.5,10,5\r\n"
                                 "# a note\r\n0.5,20,6\r\n")
    tr = load_trace(p)
    # unsorted rows come back sorted by arrival; csv times are kept as written
    assert tr.arrival_s.tolist() == [0.5, 1.5]
    assert tr.input_tokens.tolist() == [20, 10]


def test_numeric_azure_timestamps_become_relative(tmp_path):
    p = write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n100.5,1,1\n102,2,2\n")
    assert load_trace(p, "azure-llm").arrival_s.tolist() == [0.0, 1.5]
    assert load_trace(p, "csv").arrival_s.tolist() == [100.5, 102.0]


def test_time_scale_and_limit(tmp_path):
    p = write(tmp_path, "t.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n2,1,1\n4,1,1\n")
    tr = load_trace(p, time_scale=0.5, limit=2)
    assert tr.arrival_s.tolist() == [0.0, 1.0]


def test_detect_format(tmp_path):
    assert detect_format("x.jsonl", "") == "mooncake"
    assert detect_format("x.txt", '{"timestamp": 0}') == "mooncake"
    assert detect_format("x.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n") == "azure-llm"
    assert detect_format("x.csv", "arrival_s,input_tokens,output_tokens\n") == "csv"


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("body,line,words", [
    ("0,10,5\n1,,5\n", 3, "missing"),
    ("0,10,5\n1,-3,5\n", 3, "-3"),
    ("0,10,5\n1,10,-1\n", 3, "zero or more"),
    ("0,10,5\n1,ten,5\n", 3, "not a number"),
    ("0,10,5\n1,10.5,5\n", 3, "whole"),
    ("0,10,5\n1,10\n", 3, "fields"),
    ("0,10,5\n-1,10,5\n", 3, "zero or more"),
    ("0,10,5\nnan,10,5\n", 3, "finite"),
    ("0,0,5\n", 2, "at least 1"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, body, line, words):
    p = write(tmp_path, "reqs.csv", "arrival_s,input_tokens,output_tokens\n" + body)
    with pytest.raises(InputError) as exc:
        load_trace(p)
    msg = exc.value.line()
    assert "reqs.csv" in msg and f"line {line}" in msg and words in msg


def test_bad_azure_timestamp_names_line(tmp_path):
    p = write(tmp_path, "az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n"
                                  "2023-11-16 18:15:47,1,1\nyesterday,1,1\n")
    with pytest.raises(InputError) as exc:
        load_trace(p)
    assert "az.csv, line 4" in exc.value.line() and "yesterday" in exc.value.line()


@pytest.mark.parametrize("text,words", [
    ("", "empty"),
    ("arrival_s,input_tokens,output_tokens\n", "no requests"),
    ("when,input_tokens,output_tokens\n0,1,1\n", "arrival time"),
    ("arrival_s,prompt,foo\n0,1,1\n", "output"),
    ("0,10,5\n1,10,5\n", "numbers, not column names"),
])
def test_bad_files(tmp_path, text, words):
    p = write(tmp_path, "t.csv", text)
    with pytest.raises(InputError) as exc:
        load_trace(p)
    assert words in exc.value.line()


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_trace(tmp_path / "nope.csv")
    p = write(tmp_path, "t.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n")
    with pytest.raises(InputError, match="did you mean 'azure-llm'"):
        load_trace(p, "azure")
    with pytest.raises(InputError, match="time_scale"):
        load_trace(p, time_scale=0)


# ------------------------------------------------------------------ mooncake
def test_mooncake_jsonl(tmp_path):
    rows = [{"timestamp": 0, "input_length": 1024, "output_length": 10, "hash_ids": [0, 1]},
            {"timestamp": 1500, "input_length": 600, "output_length": 3, "hash_ids": [0, 2]}]
    p = write(tmp_path, "mc.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    tr = load_trace(p)
    assert tr.meta["format"] == "mooncake"
    assert tr.arrival_s.tolist() == [0.0, 1.5]          # milliseconds -> seconds
    assert tr.input_tokens.tolist() == [1024, 600]
    assert tr.hash_ids == [(0, 1), (0, 2)]
    assert tr.block_tokens == 512


def test_mooncake_json_array_without_hashes(tmp_path):
    p = write(tmp_path, "mc.json", json.dumps([{"timestamp": 5, "input_length": 1, "output_length": 1}]))
    tr = load_trace(p)
    assert tr.hash_ids is None and tr.arrival_s.tolist() == [0.005]


@pytest.mark.parametrize("line2,words", [
    ('{"timestamp": 1, "input_length": 5}', "output_length"),
    ('{"timestamp": -1, "input_length": 5, "output_length": 1}', "milliseconds"),
    ('{"timestamp": 1, "input_length": -5, "output_length": 1}', "at least 1"),
    ('{"timestamp": 1, "input_length": 5, "output_length": 1, "hash_ids": 3}', "list"),
    ('{"timestamp": 1, "input_length": "5", "output_length": 1}', "whole number"),
    ('{"timestamp": 1, "input_length": 5,', "not a JSON object"),
])
def test_bad_mooncake_rows_name_line(tmp_path, line2, words):
    p = write(tmp_path, "mc.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n' + line2 + "\n")
    with pytest.raises(InputError) as exc:
        load_trace(p)
    assert "mc.jsonl, line 2" in exc.value.line() and words in exc.value.line()


# ------------------------------------------------------------ round trip
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e5, allow_nan=False), st.integers(1, 10**6), st.integers(0, 10**5)),
                min_size=1, max_size=40))
def test_save_load_round_trip(tmp_path_factory, rows):
    p = tmp_path_factory.mktemp("rt") / "t.csv"
    tr = RequestTrace([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    save_trace(tr, p)
    back = load_trace(p)
    assert np.allclose(back.arrival_s, tr.arrival_s, atol=1e-6)
    assert sorted(zip(back.input_tokens.tolist(), back.output_tokens.tolist())) == \
        sorted(zip(tr.input_tokens.tolist(), tr.output_tokens.tolist()))


# ---------------------------------------------------------- arrival processes
def test_poisson_rate_and_dispersion():
    t = arrival_times(10.0, np.random.default_rng(0), duration_s=5000)
    assert len(t) == pytest.approx(50000, rel=0.02)
    assert t.min() >= 0 and t.max() < 5000
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)


def test_gamma_is_burstier_with_the_same_mean():
    t = arrival_times(4.0, np.random.default_rng(1), count=40000, process="gamma", cv=3.0)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.25, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.08)


def test_diurnal_peak_over_trough_and_daily_mean():
    a = 0.6
    t = arrival_times(1.0, np.random.default_rng(2), duration_s=86400, diurnal=a)
    assert len(t) == pytest.approx(86400, rel=0.02)
    counts = np.histogram(t, bins=24, range=(0, 86400))[0]
    assert np.argmax(counts) in (13, 14)
    assert counts.max() / counts.min() == pytest.approx((1 + a) / (1 - a), rel=0.2)
    assert float(np.mean(diurnal_multiplier(np.linspace(0, 86400, 10001)[:-1], a))) == pytest.approx(1.0)


def test_arrivals_are_seeded():
    a = arrival_times(3.0, np.random.default_rng(7), duration_s=100, process="gamma", cv=2)
    b = arrival_times(3.0, np.random.default_rng(7), duration_s=100, process="gamma", cv=2)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kwargs,words", [
    (dict(requests_per_s=0, duration_s=1), "requests_per_s"),
    (dict(requests_per_s=1), "duration"),
    (dict(requests_per_s=1, duration_s=1, process="bursty"), "arrival process"),
    (dict(requests_per_s=1, duration_s=1, diurnal=2), "diurnal"),
])
def test_bad_arrival_process(kwargs, words):
    with pytest.raises(InputError, match=words):
        arrival_times(rng=np.random.default_rng(0), **kwargs)


# ------------------------------------------------------------ token counts
def test_token_distributions():
    rng = np.random.default_rng(3)
    assert sample_tokens(128, 5, rng).tolist() == [128] * 5
    assert sample_tokens("2k", 2, rng).tolist() == [2000, 2000]
    x = sample_tokens({"mean": 1000, "distribution": "lognormal", "sigma": 0.8}, 200000, rng)
    assert x.mean() == pytest.approx(1000, rel=0.02)
    assert np.median(x) == pytest.approx(1000 * math.exp(-0.32), rel=0.03)
    assert sample_tokens({"thinking": 4000, "answer": 500}, 1, rng).tolist() == [4500]
    e = sample_tokens({"distribution": "empirical", "path": SAMPLE_TRACE}, 5000, rng, role="output")
    pool = set(load_trace(SAMPLE_TRACE).output_tokens.tolist())
    assert set(e.tolist()) <= pool


def test_bad_token_distribution():
    with pytest.raises(InputError, match="mean"):
        sample_tokens({"mean": 0}, 1, np.random.default_rng(0))
    with pytest.raises(InputError, match="did you mean 'lognormal'"):
        sample_tokens({"mean": 10, "distribution": "lognorm"}, 1, np.random.default_rng(0))
    with pytest.raises(InputError, match="column"):
        sample_tokens({"distribution": "empirical", "path": SAMPLE_TRACE, "column": "latency"}, 1,
                      np.random.default_rng(0))


def test_synthetic_trace_is_sorted_and_seeded():
    a = synthetic_trace(5.0, {"mean": 800, "distribution": "lognormal"}, 200, np.random.default_rng(4),
                        duration_s=60)
    b = synthetic_trace(5.0, {"mean": 800, "distribution": "lognormal"}, 200, np.random.default_rng(4),
                        duration_s=60)
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.input_tokens, b.input_tokens)
    assert np.all(np.diff(a.arrival_s) >= 0) and (a.output_tokens == 200).all()
