"""The one error type for bad input, shared by every layer.

An InputError carries what is wrong, where (a file, a field, a flag) and how
to fix it. The CLI prints it as one line, ``error: <what> (<where>): <fix>``,
and exits with status 2; library callers can catch it like any ValueError.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class InputError(ValueError):
    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.fix:
            text += f": {self.fix}"
        return text


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Known names that look like `name`, best first."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(str(name).lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def unknown_name(kind: str, name: str, known: Iterable[str], where: str | None = None) -> InputError:
    """An InputError for an unknown catalog name that suggests the close ones."""
    known = sorted(known)
    near = close_matches(name, known)
    if near:
        fix = "did you mean " + " or ".join(repr(k) for k in near) + "?"
    else:
        fix = "known: " + ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    return InputError(f"unknown {kind} {name!r}", where, fix)
