"""The grammar of a plain-text metric line: `key=value`, `key: value`, `key value`, `98.2%`,
`9812/10000 (98.12%)`, and how a printed name becomes a key."""
from __future__ import annotations

import math
import re

from .parsed import EPOCH_KEYS, STEP_KEYS

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


# Words that make a line a sentence, not a metric line: "showing 5 of 121", "Training with relu, seed1,
# with LayerNorm", "Loaded 60000 images in 3.2 s", "val_acc improved from 0.85 to 0.88".
_PROSE_WORDS = frozenset("""a an the of with without in on at to from for by and or out into over than is are was were
be been has have had will not no using use showing loaded loading saving saved found took starting started
improved reached restoring""".split())
_WORD = re.compile(r"[A-Za-z]+")
# Another library's warning in the log ("WARNING:tensorflow:...", "UserWarning: ...", a traceback).
_WARNING_LINE = re.compile(r"WARNING:|\b[A-Z]\w*Warning\b|\bTraceback \(most recent call last\)|^\s*File \"")
_SEED_WORD = re.compile(r"^(?:seed|rng)\d*$|^seed[_\-=]?\d+$", re.I)
_COUNTERS = frozenset(STEP_KEYS + EPOCH_KEYS)


def _prose_count(text: str) -> int:
    return sum(w.lower() in _PROSE_WORDS for w in _WORD.findall(text))


def _kept(line: str) -> list:
    """[(match, key)] for the pairs of a metric line; [] for a header, prose or warning line.
    A line is prose when two or more prose words appear in its keys and the text around them; a
    single prose word only drops the pair whose name holds it. A seed is a run's name, not a metric."""
    if _WARNING_LINE.search(line):
        return []
    prefix = ""
    m = _SET_PREFIX.match(line)
    if m:
        prefix = {"training": "train", "valid": "val", "validation": "val"}.get(m.group(1).lower(), m.group(1).lower()) + "/"
    found, outside, pos, prose = [], [], 0, 0
    for p in _PAIR.finditer(line):
        outside.append(line[pos:p.start()])
        pos = p.end()
        key = _norm_key(p.group("key"))
        n = _prose_count(p.group("key"))
        prose += n
        if n or any(_SEED_WORD.match(w) for w in re.split(r"[_/\s]+", key)):
            continue
        if prefix and key not in _COUNTERS:
            key = prefix + key
        found.append((p, key))
    outside.append(line[pos:])
    if found and prose + _prose_count(" ".join(outside)) >= 2:
        return []
    return found


def _line_pairs(line: str):
    """[(key, start, end, value start, has_den, has_pct)] for each key/value pair found in one line."""
    return [(key, p.start(), p.end(), p.start("val"), p.group("den") is not None, p.group("pct") is not None)
            for p, key in _kept(line)]


def _line_values(line: str):
    vals = []
    for p, key in _kept(line):
        v = float(p.group("val"))
        if p.group("den") is not None:
            den = float(p.group("den"))
            # "Epoch 3/10" is a counter out of its total; "9812/10000" a count out of a total.
            v = v if key in _COUNTERS else (v / den if den else math.nan)
        elif p.group("pct") is not None:
            v /= 100.0
        vals.append(v)
    return vals
