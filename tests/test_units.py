"""Quantities written by people become SI numbers, or one clear error."""
import math

import pytest
from hypothesis import given, strategies as st

from workloads.errors import InputError
from workloads.units import format_duration, parse_bytes, parse_count, parse_duration, positive


@pytest.mark.parametrize("text,seconds", [
    ("30d", 30 * 86400), ("2h", 7200), ("50ms", 0.05), ("90", 90), (90, 90), ("1.5e3", 1500),
    ("3m", 180), ("2h 30m", 9000), ("1y", 365.25 * 86400), ("10us", 1e-5), ("1w", 7 * 86400),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text,value", [
    ("15T", 15e12), ("1.5e12", 1.5e12), ("405B", 405e9), ("2k", 2000), ("7M", 7e6), (3, 3), ("1_000", 1000),
])
def test_counts(text, value):
    assert parse_count(text) == pytest.approx(value)


@pytest.mark.parametrize("text,value", [("80GB", 80e9), ("80GiB", 80 * 2**30), ("512MiB", 2**29), ("1.5e9", 1.5e9)])
def test_bytes(text, value):
    assert parse_bytes(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["abc", "2x", "h2", "", "1..2s", None, True, "nan", "inf"])
def test_bad_durations_name_the_field(bad):
    with pytest.raises(InputError) as exc:
        parse_duration(bad, field="failures.restart_delay")
    assert exc.value.where == "failures.restart_delay"
    assert exc.value.fix


@pytest.mark.parametrize("bad", ["15X", "T15", "", "1e999"])
def test_bad_counts(bad):
    with pytest.raises(InputError):
        parse_count(bad, field="tokens")


def test_positive_rejects_zero_and_negative():
    assert positive(3, "nodes") == 3
    assert positive(0, "x", allow_zero=True) == 0
    with pytest.raises(InputError, match="nodes"):
        positive(0, "nodes")
    with pytest.raises(InputError):
        positive(-1, "nodes", allow_zero=True)


@given(st.floats(min_value=0.001, max_value=1e9, allow_nan=False), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_duration_roundtrip_scales(x, unit):
    scale = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert math.isclose(parse_duration(f"{x!r}{unit}"), x * scale, rel_tol=1e-9)


def test_format_duration_is_short():
    assert format_duration(45) == "45s"
    assert format_duration(86400 * 41) == "41.0d"
    assert format_duration(7200) == "2.0h"
