"""JSON documents: Hugging Face trainer_state.json, a JSON list of records; JSON lines fall through
to the tabular reader."""
from __future__ import annotations

import json

import pandas as pd

from .guards import check_json_depth
from .limits import DEFAULT, Limits
from .names import _stem
from .parsed import LogParseError, ParsedLog, _empty
from .tabular import _flatten, _wide_to_scalars, parse_jsonl, records_frame


def parse_json(text: str, name: str = "<json>", lim: Limits = DEFAULT) -> ParsedLog:
    s = text.strip().lstrip("\ufeff")
    check_json_depth(s, name, lim)
    if len(s) > lim.json_document_bytes and not _is_json_lines(s):
        raise LogParseError(name, f"a {len(s) / 2**20:.0f} MB JSON document is over the limit json_document_bytes="
                                  f"{lim.json_document_bytes:,}; write it as JSON lines (one record a line)")
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError):  # ValueError also covers ints past int_max_str_digits
        obj = None
    run = _stem(name)
    if isinstance(obj, dict) and isinstance(obj.get("log_history"), list):
        warnings: list[str] = []
        recs = _flattened(obj["log_history"])
        df = _wide_to_scalars(recs, run, name, warnings, lim) if len(recs) else _empty()
        if not len(df):
            raise LogParseError(name, "trainer_state.json has an empty log_history")
        return ParsedLog(name, "trainer_state", df, warnings=warnings)
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        warnings = []
        df = _wide_to_scalars(_flattened(obj), run, name, warnings, lim)
        if not len(df):
            raise LogParseError(name, "JSON records hold no numeric values")
        return ParsedLog(name, "json", df, warnings=warnings)
    return parse_jsonl(s, name, lim)


def _is_json_lines(s: str) -> bool:
    """The first line is a whole JSON value: JSON lines, read a line at a time, not decoded whole."""
    first = s[:s.find("\n")] if "\n" in s[:1_000_000] else ""
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        return False
    return True


def _flattened(records: list) -> pd.DataFrame:
    """The records as a table, each decoded dict let go once flattened (they are most of the peak)."""
    def each():
        for i, r in enumerate(records):
            records[i] = None
            if isinstance(r, dict):
                yield _flatten(r)
    return records_frame(each())
