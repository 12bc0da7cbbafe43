"""The fast path of the text reader: a regex per print statement, matched against the whole file
in one C-level pass, instead of reading line by line."""
from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pandas as pd

from .pairs import _COUNTERS, _HAS_DIGIT, _NUM


def _literal(s: str) -> str:
    # Between pairs: timestamps and counters vary line to line, so digits and blanks generalise.
    out = []
    for piece in re.split(r"(\d+|[ \t]+)", s):
        if not piece:
            continue
        out.append(r"\d+" if piece.isdigit() else r"[ \t]+" if piece.isspace() else re.escape(piece))
    return "".join(out)


def _template(line: str, pairs, capture: bool = True) -> tuple[str, list]:
    """A regex that matches every line printed by the same print statement as `line`."""
    rx, pos, spec = [], 0, []
    o = "(" if capture else "(?:"
    for key, start, end, vstart, den, pct in pairs:
        rx.append(_literal(line[pos:start]))
        # The key and separator stay literal: "top1 acc" must not match "top5 acc".
        head = line[start:vstart]
        rx.append("".join(r"[ \t]+" if c.isspace() else re.escape(c) for c in re.split(r"([ \t]+)", head) if c)
                  .replace(r"[ \t]+[ \t]+", r"[ \t]+"))
        if den:
            rx.append(o + _NUM + ")/" + o + r"\d+)" + rf"(?:[ \t]*\([ \t]*(?:{_NUM})[ \t]*%[ \t]*\))?")
        elif pct:
            rx.append(rf"{o}{_NUM})[ \t]*%")
        else:
            rx.append(rf"{o}{_NUM})")
        spec.append((key, den, pct))
        pos = end
    rx.append(_literal(line[pos:]))
    return "".join(rx), spec


# A NUM can start with these and end with those; a token touching a number must avoid them.
_NUM_CHARS = set("0123456789.+-eEnNaAiIfFtTyY")
_NUM_START, _NUM_END = set("0123456789.+-nNiI"), set("0123456789.nNfFyY")


def _fixed_tokens(line: str, pairs) -> list[str] | None:
    """The non-number text of a line as whitespace-free tokens, if deleting them from a block of
    such lines can leave only the numbers: no digits between pairs (those are generalised, so they
    vary), no count-over-total values, and no token that could merge with a number."""
    text, pos = [], 0
    for _key, start, end, vstart, den, pct in pairs:
        if den or _HAS_DIGIT.search(line[pos:start]):
            return None
        text.append(line[pos:vstart])
        if pct:
            text.append("%")
        pos = end
    if _HAS_DIGIT.search(line[pos:]):
        return None
    text.append(line[pos:])
    tokens = set(" ".join(text).split())
    for t in tokens:
        if not (set(t) - _NUM_CHARS) or t[0] in _NUM_END or t[-1] in _NUM_START:
            return None
    return sorted(tokens, key=len, reverse=True)  # longest first: "step=" before "p="



def _hits(catch_all, pending) -> np.ndarray | None:
    if len(catch_all) != len(pending):  # a template that can match across lines: stay safe
        return None
    # map(bool, ...) runs in C: a line is taken when the catch-all group is empty and the line is not.
    hit = ~np.fromiter(map(bool, catch_all), bool, len(pending))
    hit &= np.fromiter(map(bool, pending), bool, len(pending))
    return hit if hit.sum() >= 2 else None


# Which lines have a template's shape is all the token path asks of the regex; its numbers are
# then read strictly (a template is dropped if one fails), so a character class can stand in for
# the number grammar: Python's re runs it about 3x faster than _NUM's nested alternatives. nan and
# inf are left to the other paths: blanking letters below would make them vanish.
_LOOSE_NUM = r"[-+.0-9eE]+"
# Lines per block when blanking tokens: a block's copies stay in cache across the passes.
_BLOCK_LINES = 5000
# A hit line holds only tokens, blanks and numbers, so every other character can be blanked in
# one bytes.translate pass; only tokens holding a character of a number need a replace each.
_NUMBER_BYTES = b"0123456789.+-eE"
_BLANK_ALL_BUT_NUMBERS = bytes(c if c in _NUMBER_BYTES + b" \t\n" else 0x20 for c in range(256))


def _take_template_token_path(rx, spec, tokens, pending, all_lines, text):
    """One regex pass that only says which lines match (no capture groups, so no object per value);
    then the fixed tokens are deleted from those lines and numpy parses what is left, in C."""
    if tokens is None:
        return None
    block = text if pending is all_lines else "\n".join(pending)
    hit = _hits(re.compile(rf"^(?:{rx.replace(_NUM, _LOOSE_NUM)})$|^(.*)$", re.M).findall(block), pending)
    if hit is None:
        return None
    nums = _token_numbers(list(itertools.compress(pending, hit)), tokens)
    if nums is None or nums.size != int(hit.sum()) * len(spec):
        return None
    table = nums.reshape(-1, len(spec))
    return hit, [np.ascontiguousarray(table[:, i]) / (100.0 if pct else 1.0) for i, (_, _, pct) in enumerate(spec)]


def _token_numbers(lines: list[str], tokens: list[str]) -> np.ndarray | None:
    """The numbers left once the tokens are blanked, or None if anything else is left."""
    # Same-length blanking: str.replace pays ~100 ns an occurrence to shorten a string.
    risky = [(b, b" " * len(b)) for b in (t.encode() for t in tokens) if set(b) & set(_NUMBER_BYTES)]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns, not raises, on a token it cannot read
        for i in range(0, len(lines), _BLOCK_LINES):
            joined = "\n".join(lines[i:i + _BLOCK_LINES]).encode()
            for t, blank in risky:
                joined = joined.replace(t, blank)
            try:
                out.append(np.fromstring(joined.translate(_BLANK_ALL_BUT_NUMBERS), sep=" "))
            except (ValueError, DeprecationWarning):
                return None
    return np.concatenate(out) if out else np.zeros(0)


def _take_template_capture_path(rx, spec, pending, all_lines, text):
    block = text if pending is all_lines else "\n".join(pending)
    found = re.compile(rf"^(?:{rx})$|^(.*)$", re.M).findall(block)
    if not found:
        return None
    cols = list(zip(*found))
    hit = _hits(cols[-1], pending)
    if hit is None:
        return None
    everywhere = bool(hit.all())
    out, g = [], 0
    for key, den, pct in spec:
        v = _to_float(cols[g], hit, everywhere)
        g += 1
        if den:
            if key not in _COUNTERS:  # "Epoch 3/10" keeps 3
                d = _to_float(cols[g], hit, everywhere)
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = np.where(d != 0, v / d, np.nan)
            g += 1
        elif pct:
            v = v / 100.0
        out.append(v)
    return hit, out


def _to_float(col: tuple, hit: np.ndarray, everywhere: bool) -> np.ndarray:
    # numpy parses a tuple of str in C; the pandas fallback only for oddities like "Infinity".
    try:
        return np.array(col if everywhere else list(itertools.compress(col, hit)), dtype=np.float64)
    except ValueError:
        return pd.to_numeric(pd.Series(col, dtype=object)[hit], errors="coerce").to_numpy(float)
