"""The grammar of a plain-text metric line: `key=value`, `key: value`, `key value`, `98.2%`,
`9812/10000 (98.12%)`, and how a printed name becomes a key."""
from __future__ import annotations

import math
import re

from core.logs.parsed import EPOCH_KEYS, STEP_KEYS

_LEVEL_WORDS = {"info", "debug", "warning", "warn", "error", "critical", "trace", "notice"}
# What people print -> the short names the rest of ActLab uses.
_KEY_ALIASES = {"accuracy": "acc", "average_loss": "loss", "avg_loss": "loss", "mean_loss": "loss",
                "iteration": "step", "iter": "step", "global_step": "step"}

# ----------------------------------------------------------------------------------------------
# plain text
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)"
_KEY = r"[A-Za-z_][\w./@\-]*(?:[ \t][A-Za-z_][\w./@\-]*)*"
# `Accuracy: 9812/10000 (98.12%)` is a count over a total: the fraction is exact, the % rounded.
_PAIR = re.compile(
    rf"(?<![\w./@\-])(?P<key>{_KEY})(?P<sep>[ \t]*[=:][ \t]*|[ \t]+)"
    rf"(?P<val>{_NUM})"
    rf"(?:(?P<frac>/(?P<den>\d+)(?:[ \t]*\([ \t]*(?:{_NUM})[ \t]*%[ \t]*\))?)|(?P<pct>[ \t]*%))?"
    r"(?![\w./%])")
_SET_PREFIX = re.compile(r"^\s*(train|training|val|valid|validation|test|eval|dev)\s+set\s*:", re.I)
_HAS_DIGIT = re.compile(r"\d")


def _norm_key(raw: str) -> str:
    words = raw.split()
    while len(words) > 1 and words[0].lower() in _LEVEL_WORDS:
        words = words[1:]
    # "Train Epoch: 1" and "INFO step 1200": the last word is the counter.
    if len(words) > 1 and words[-1].lower() in STEP_KEYS + EPOCH_KEYS:
        words = words[-1:]
    key = "_".join(w.lower() for w in words) if len(words) > 1 or raw[:1].isupper() else words[0]
    return _KEY_ALIASES.get(key, key)


def _line_pairs(line: str):
    """[(key, start, end, has_den, has_pct)] for each key/value pair found in one line."""
    prefix = ""
    m = _SET_PREFIX.match(line)
    if m:
        prefix = {"training": "train", "valid": "val", "validation": "val"}.get(m.group(1).lower(), m.group(1).lower()) + "/"
    out = []
    for p in _PAIR.finditer(line):
        key = _norm_key(p.group("key"))
        if prefix and key not in STEP_KEYS + EPOCH_KEYS:
            key = prefix + key
        out.append((key, p.start(), p.end(), p.start("val"), p.group("den") is not None, p.group("pct") is not None))
    return out


def _line_values(line: str):
    vals = []
    for p in _PAIR.finditer(line):
        v = float(p.group("val"))
        if p.group("den") is not None:
            den = float(p.group("den"))
            v = v / den if den else math.nan
        elif p.group("pct") is not None:
            v /= 100.0
        vals.append(v)
    return vals
