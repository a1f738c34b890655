"""Parse quantities written by people: durations, counts, bytes, rates.

Inside gpusim everything is SI (seconds, bytes, FLOP, FLOP/s); these parsers
are the edge where ``30d``, ``50ms``, ``15T`` or ``80GiB`` become numbers.
Each raises InputError naming the field on anything it cannot read.
"""
from __future__ import annotations

import math
import re

from workloads.errors import InputError

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 7 * 86400.0, "week": 7 * 86400.0, "weeks": 7 * 86400.0,
    "mo": 30.4375 * 86400.0, "month": 30.4375 * 86400.0, "months": 30.4375 * 86400.0,
    "y": 365.25 * 86400.0, "yr": 365.25 * 86400.0, "year": 365.25 * 86400.0, "years": 365.25 * 86400.0,
}

# Decimal multipliers for counts (tokens, FLOPs, parameters, requests).
_COUNT_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}

_BYTE_UNITS = {
    "b": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
}

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def _finite(value: float, field: str, raw) -> float:
    if not math.isfinite(value):
        raise InputError(f"{raw!r} is not a finite number", field, "give a plain finite number")
    return value


def parse_duration(raw, field: str = "duration") -> float:
    """Seconds from ``90``, ``1.5e3``, ``50ms``, ``2h``, ``30d``, ``1y``, ``"2h 30m"``."""
    if isinstance(raw, bool) or raw is None:
        raise InputError(f"{raw!r} is not a duration", field, "write e.g. 30s, 50ms, 2h, 30d")
    if isinstance(raw, (int, float)):
        return _finite(float(raw), field, raw)
    text = str(raw).strip()
    parts = re.findall(_NUM + r"\s*([a-zA-Zµ]*)", text)
    rebuilt = "".join(re.findall(r"\S+", text))
    if not parts or "".join(n + u for n, u in parts) != rebuilt or (len(parts) > 1 and not all(u for _, u in parts)):
        raise InputError(f"cannot read {raw!r} as a duration", field,
                         "write a number with a unit: ns, us, ms, s, m, h, d, w, mo, y (e.g. 30d, 2h, 50ms)")
    total = 0.0
    for number, unit in parts:
        if unit and unit not in _DURATION_UNITS:
            raise InputError(f"unknown time unit {unit!r} in {raw!r}", field,
                             "use one of ns, us, ms, s, m (minutes), h, d, w, mo, y")
        total += float(number) * _DURATION_UNITS.get(unit, 1.0)
    return _finite(total, field, raw)


def parse_count(raw, field: str = "count") -> float:
    """A number with an optional decimal suffix: ``15T`` tokens, ``1.5e12``, ``405B``, ``2k``."""
    if isinstance(raw, bool) or raw is None:
        raise InputError(f"{raw!r} is not a number", field, "write e.g. 15T, 1.5e12, 405B, 2k")
    if isinstance(raw, (int, float)):
        return _finite(float(raw), field, raw)
    text = str(raw).strip().replace("_", "").replace(",", "")
    m = re.fullmatch(_NUM + r"\s*([kKMBGTPE]?)", text)
    if not m:
        raise InputError(f"cannot read {raw!r} as a number", field,
                         "write a number with an optional suffix k, M, B/G, T, P, E (e.g. 15T, 1.5e12)")
    return _finite(float(m.group(1)) * _COUNT_SUFFIX[m.group(2)], field, raw)


def parse_bytes(raw, field: str = "bytes") -> float:
    """Bytes from ``80GB``, ``80GiB``, ``1.5e9``, ``512MiB``."""
    if isinstance(raw, bool) or raw is None:
        raise InputError(f"{raw!r} is not a size", field, "write e.g. 80GB or 80GiB")
    if isinstance(raw, (int, float)):
        return _finite(float(raw), field, raw)
    text = str(raw).strip()
    m = re.fullmatch(_NUM + r"\s*([KMGTP]i?B|[bB])?", text)
    if not m:
        raise InputError(f"cannot read {raw!r} as a size", field, "write a number with KB, MB, GB, TB or KiB, MiB, GiB, TiB")
    return _finite(float(m.group(1)) * _BYTE_UNITS[m.group(2) or "B"], field, raw)


def positive(value: float, field: str, allow_zero: bool = False) -> float:
    """Check a count or duration is > 0 (or >= 0)."""
    if value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "greater than zero"
        raise InputError(f"{field} is {value:g}", field, f"it must be {need}")
    return value


def format_duration(seconds: float) -> str:
    """A short human form: 45s, 12.5m, 3.2h, 41.0d, 1.2y."""
    s = float(seconds)
    for unit, size in (("y", 365.25 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if abs(s) >= size * (2 if unit != "m" else 1):
            return f"{s / size:.1f}{unit}"
    return f"{s:.3g}s"
