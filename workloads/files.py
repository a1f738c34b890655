"""Read a user's YAML file with every failure turned into one clear InputError.

Missing, empty, binary, non-UTF-8 and syntactically broken files each get
their own message; a YAML error names the line and column.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from workloads.errors import InputError


def read_text(path, what: str = "file") -> str:
    """A file's text, or InputError for missing, binary and non-UTF-8 files."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {str(p)!r} does not exist", str(p), "check the path")
    if p.is_dir():
        raise InputError(f"{what} {str(p)!r} is a folder, not a file", str(p), "give the path of a file")
    data = p.read_bytes()
    if b"\x00" in data[:8192]:
        raise InputError(f"{what} {str(p)!r} is a binary file", str(p), "give a text (YAML/CSV/JSON) file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {str(p)!r} is not UTF-8 text (byte {exc.start})", str(p),
                         "save it as UTF-8") from None


def read_yaml(path, what: str = "YAML file", require_mapping: bool = True):
    """Parsed YAML; InputError for empty files, syntax errors (with line) and non-mappings."""
    text = read_text(path, what)
    if not text.strip():
        raise InputError(f"{what} {str(path)!r} is empty", str(path), "write the YAML content (see README)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"YAML syntax error: {problem}", where, "fix the YAML at that line") from None
    if data is None:
        raise InputError(f"{what} {str(path)!r} holds no data (only comments)", str(path), "write the YAML content")
    if require_mapping and not isinstance(data, dict):
        raise InputError(f"{what} {str(path)!r} must be a mapping of keys, not a {type(data).__name__}",
                         str(path), "start the file with 'key: value' lines")
    return data
