"""Text logs read with the user's own regex (named groups) instead of auto-detection."""
from __future__ import annotations

import re

import numpy as np

from ..errors import UserError
from .names import _stem
from .parsed import MAX_UNPARSED_KEPT, LogParseError, ParsedLog
from .rows import _lines_to_scalars, _Rows


def _parse_with_regex(text: str, name: str, regex: str) -> ParsedLog:
    rx = compile_user_regex(regex)
    groups = list(rx.groupindex)
    rows, unparsed, n_unparsed = [], [], 0
    percent = set()
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        m = rx.search(line)
        if not m:
            n_unparsed += 1
            if len(unparsed) < MAX_UNPARSED_KEPT:
                unparsed.append((no, line[:300]))
            continue
        d = m.groupdict()
        vals = {}
        if "value" in d and d["value"] is not None:
            vals[(d.get("key") or "value").strip()] = d["value"]
        for g in groups:
            if g not in ("key", "value", "step", "epoch") and d[g] is not None:
                vals[g] = d[g]
        for k in ("step", "epoch"):
            if d.get(k) is not None:
                vals[k] = d[k]
        for k, raw in vals.items():
            raw = raw.strip()
            pct = raw.endswith("%")
            try:
                v = float(raw.rstrip("%").strip())
            except ValueError:
                n_unparsed += 1
                if len(unparsed) < MAX_UNPARSED_KEPT:
                    unparsed.append((no, line[:300]))
                break
            if pct:
                v /= 100.0
                percent.add(k)
            rows.append((no, k, v))
    if not rows:
        raise LogParseError(name, f"the regex matched no line with a number: {regex!r}")
    collected = _Rows()
    by_key: dict[str, list] = {}
    for no, k, v in rows:
        by_key.setdefault(k, []).append((no, v))
    for pos, (k, pts) in enumerate(by_key.items()):
        collected.add(k, pos, np.array([p[0] for p in pts], np.int64), np.array([p[1] for p in pts], float))
    df = _lines_to_scalars(*collected.arrays(), _stem(name), text.count("\n") + 1)
    return ParsedLog(name, "regex", df, unparsed, n_unparsed, sorted(percent))


def compile_user_regex(regex: str) -> re.Pattern:
    try:
        rx = re.compile(regex)
    except re.error as e:
        raise UserError(f"invalid regex {regex!r}: {e}") from None
    names = set(rx.groupindex)
    if not names - {"step", "epoch", "key"}:
        raise UserError(f"regex {regex!r} needs a named group for the value: (?P<value>...) with (?P<key>...), "
                        "or one named after the metric, e.g. (?P<acc>[0-9.]+)")
    if "key" in names and "value" not in names:
        raise UserError(f"regex {regex!r} has (?P<key>...) but no (?P<value>...)")
    return rx
