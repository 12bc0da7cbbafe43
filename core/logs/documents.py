"""JSON documents: Hugging Face trainer_state.json, a JSON list of records; JSON lines fall through
to the tabular reader."""
from __future__ import annotations

import json

import pandas as pd

from core.logs.names import _stem
from core.logs.parsed import LogParseError, ParsedLog, _empty
from core.logs.tabular import _flatten, _wide_to_scalars, parse_jsonl


def parse_json(text: str, name: str = "<json>") -> ParsedLog:
    s = text.strip().lstrip("\ufeff")
    try:
        obj = json.loads(s)
    except json.JSONDecodeError:
        obj = None
    run = _stem(name)
    if isinstance(obj, dict) and isinstance(obj.get("log_history"), list):
        recs = [_flatten(r) for r in obj["log_history"] if isinstance(r, dict)]
        df = _wide_to_scalars(pd.DataFrame(recs), run) if recs else _empty()
        if not len(df):
            raise LogParseError(name, "trainer_state.json has an empty log_history")
        return ParsedLog(name, "trainer_state", df)
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        df = _wide_to_scalars(pd.DataFrame([_flatten(r) for r in obj]), run)
        if not len(df):
            raise LogParseError(name, "JSON records hold no numeric values")
        return ParsedLog(name, "json", df)
    return parse_jsonl(s, name)
