"""Plain-text training logs in the shapes people print (key=value, `Epoch 3 | loss 0.41`,
`Test set: Average loss: ..., Accuracy: 9812/10000 (98%)`, timestamped logger lines)."""
from __future__ import annotations

import gc
import itertools
import re

import numpy as np

from .guards import cap_rows, drop_long_lines
from .limits import DEFAULT, Limits
from .names import _stem, infer_variant_seed
from .pairs import _HAS_DIGIT, _line_pairs, _line_values
from .parsed import MAX_UNPARSED_KEPT, LogParseError, ParsedLog
from .rows import _lines_to_scalars, _Rows
from .templates import _fixed_tokens, _take_template_capture_path, _take_template_token_path, _template
from .user_regex import _parse_with_regex


def parse_text(text: str, name: str = "<text>", regex: str | None = None, fast: bool = True,
               limits: Limits = DEFAULT) -> ParsedLog:
    """Plain-text logs. `regex` (named groups) overrides auto-detection. `fast` matches whole files
    against per-print-statement templates (one C-level regex pass) instead of line by line."""
    if "\r" in text:
        # tqdm redraws with bare \r; each redraw is its own line for us.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    notes: list[str] = []
    text = drop_long_lines(text, name, notes, limits)
    if not _HAS_DIGIT.search(text):
        raise LogParseError(name, "contains no numbers, so no metrics could be read")
    if regex:
        log = _parse_with_regex(text, name, regex)
        log.warnings = notes + log.warnings
        return log
    # Millions of small tuples from findall would set off the cyclic GC again and again; they hold
    # no cycles, so it is paused for the parse.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        log = _parse_text_auto(text, name, fast, limits)
        log.warnings = notes + log.warnings
        return log
    finally:
        if gc_was_on:
            gc.enable()


def _parse_text_auto(text: str, name: str, fast: bool, limits: Limits = DEFAULT) -> ParsedLog:
    rows = _Rows()
    percent, unparsed, n_unparsed = set(), [], 0
    all_lines = text.split("\n")
    line_nos, pending = np.arange(1, len(all_lines) + 1), all_lines
    for _ in range(8 if fast else 0):
        if len(pending) < 64:
            break
        first = next(((l, pr) for l in pending[:2000] if (pr := _line_pairs(l))), None)
        if first is None:
            break
        rx, spec = _template(*first)
        taken = _take_template_token_path(_template(*first, capture=False)[0], spec, _fixed_tokens(*first),
                                          pending, all_lines, text) \
            or _take_template_capture_path(rx, spec, pending, all_lines, text)
        if taken is None:
            break
        hit, columns = taken
        taken_lines = line_nos if hit.all() else line_nos[hit]
        for pos, ((key, _den, pct), v) in enumerate(zip(spec, columns)):
            if pct:
                percent.add(key)
            rows.add(key, pos, taken_lines, v)
        keep = ~hit
        line_nos = line_nos[keep]
        pending = list(itertools.compress(pending, keep))
    # Whatever no template took: line by line.
    one: dict[str, tuple] = {}
    slow_cut = []
    if len(pending) > limits.slow_lines:
        slow_cut.append(f"{name}: {len(pending):,} lines match no repeated line shape, over the limit slow_lines="
                        f"{limits.slow_lines:,}; those from line {int(line_nos[limits.slow_lines]):,} on were not read")
        line_nos, pending = line_nos[:limits.slow_lines], pending[:limits.slow_lines]
    for no, line in zip(line_nos.tolist(), pending):
        if not line.strip():
            continue
        pairs = _line_pairs(line)
        if not pairs:
            n_unparsed += 1
            if len(unparsed) < MAX_UNPARSED_KEPT:
                unparsed.append((no, line[:300]))
            continue
        for pos, ((key, _s, _e, _v, _den, pct), v) in enumerate(zip(pairs, _line_values(line))):
            if pct:
                percent.add(key)
            ls, vs, _ = one.setdefault(key, ([], [], (no, pos)))
            ls.append(no)
            vs.append(v)
    for key, (ls, vs, (no, pos)) in one.items():
        rows.add(key, pos, np.array(ls, dtype=np.int64), np.array(vs, dtype=float))
        rows.first[key] = min(rows.first[key], (no, pos))
    _drop_run_names(rows, name)
    warnings = slow_cut
    cap_rows(rows, name, warnings, limits)
    # The line list is ~60 bytes a line; freed before the table is built, it is not in the peak.
    n_lines = len(all_lines)
    del all_lines, pending
    if not rows.chunks:
        raise LogParseError(name, f"no 'key value' pairs found in {n_lines} lines; expected lines like "
                                  "'epoch=3 acc=0.91' or 'Epoch 3 | loss 0.41' (or give a regex)")
    df = _lines_to_scalars(*rows.arrays(), _stem(name), n_lines)
    fmt = "keyvalue" if re.search(r"^\s*\w[\w/.\-]*=[-+.\d]", text[:2000], re.M) else "text"
    if len(df) == 0:
        raise LogParseError(name, "found step/epoch counters but no metric values")
    return ParsedLog(name, fmt, df, sorted(unparsed), n_unparsed, sorted(percent), warnings)


def _drop_run_names(rows: _Rows, name: str):
    """A key that spells the run's variant ("with_relu_top1" in with_relu_seed1.log) came from a line
    naming the run, not a metric: drop it. Only a variant of two or more words counts: one word
    ("relu", "acc" in acc.log) is too often part of a real metric's name (dead_relu, val_acc)."""
    variant = [w for w in re.split(r"[\W_]+", infer_variant_seed(name)[0].lower()) if w]
    if len(variant) < 2:
        return
    for key in list(rows.chunks):
        words = re.split(r"[\W_]+", key.lower())
        if len(words) > 1 and any(words[i:i + len(variant)] == variant for i in range(len(words) - len(variant) + 1)):
            del rows.chunks[key], rows.first[key]

