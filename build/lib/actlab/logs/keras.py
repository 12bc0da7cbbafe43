"""Keras `model.fit` console output as people save it (`python train.py > train.log`).

What such a file holds: an `Epoch k/N` header per epoch; progress updates (`ETA: ...`) that repeat
the running metrics, separated by `\\r`, by runs of `\\b`, or by nothing at all; other libraries'
warnings printed into the middle of a progress line; the epoch's full line (`n/n ... - loss: ... -
val_loss: ...`); and after the last epoch, `model.evaluate()`'s own progress and closing line.
Read as: one value per epoch per key from the epoch's full line; the evaluate line under `eval/`
keys at the last epoch; progress updates never count.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .limits import DEFAULT, Limits
from .names import _stem
from .pairs import _line_pairs, _line_values
from .parsed import MAX_UNPARSED_KEPT, LogParseError, ParsedLog
from ..store.runs import SCALAR_COLUMNS

_HEADER = re.compile(r"^\s*Epoch (\d{1,15})/(\d{1,15})\s*$")  # 15 digits: an int64, never a 5,000-digit int()
_IS_KERAS = re.compile(r"^\s*Epoch \d+/\d+\s*$", re.M)
_BAR = re.compile(r"\d+/(?:\d+|Unknown) +(?:\[[=>.]*\]|[━─]+|-) ")
# Where a progress update starts: "  32/1875 [====>...]", "1875/1875 ━━━━", "1875/1875 - 3s - loss".
_SEGMENT = re.compile(r"(?<![\d/])(?=\d+/(?:\d+|Unknown) +(?:\[[=>.]*\]|[━─]+|- ))")
_COUNT = re.compile(r"\s*(\d+)/(\d+|Unknown)")
_METRIC = re.compile(r"(?:^|\s-\s)([A-Za-z_][\w./@]*): ([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)(?=\s|$)")
# Another library's log line, printed wherever the cursor was: TensorFlow's C++ logger, absl, Python
# warnings and loggers. Everything from there to the end of the line is theirs.
_FOREIGN = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?: [IWEF] "
    r"|[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ "
    r"|(?:[\w.\-]*/)*[\w.\-]+\.py:\d+: \w*(?:Warning|Error):"
    r"|WARNING:|ERROR:|INFO:(?=\w)")


def looks_like_keras_console(text: str) -> bool:
    head = text[:200_000]
    return bool(_IS_KERAS.search(head)) and bool(_BAR.search(head))


def _segments(text: str, too_long: list, limit: int):
    """(line number, text) per progress update, header or other line, foreign text cut out.
    Progress updates share one line (joined by \\r or \\b), so the line length limit applies to
    each update: one over it is counted in `too_long` and skipped."""
    for no, raw in enumerate(text.split("\n"), 1):
        for piece in re.split(r"\r|\x08+", raw):
            m = _FOREIGN.search(piece)
            if m:
                piece = piece[: m.start()]
            for seg in _SEGMENT.split(piece):
                if len(seg) > limit:
                    too_long.append(no)
                    continue
                if seg.strip():
                    yield no, seg.strip()


def parse_keras_console(text: str, name: str = "<keras>", lim: Limits = DEFAULT) -> ParsedLog:
    rows, printed, unparsed, n_unparsed, warnings, too_long = [], [], [], 0, [], []
    epoch, blocks = 0, []  # blocks: [epoch, [(kind, total, done, metrics)]]
    for no, seg in _segments(text, too_long, lim.line_chars):
        h = _HEADER.match(seg)
        if h:
            epoch = int(h.group(1))
            blocks.append((epoch, []))
            continue
        c = _COUNT.match(seg)
        if c and _BAR.match(seg.lstrip()):
            metrics = {k: float(v) for k, v in _METRIC.findall(seg) if k != "ETA"}
            done, total = c.group(1), c.group(2)
            complete = total == "Unknown" or done == total
            if not blocks:
                blocks.append((0, []))
            blocks[-1][1].append((complete and "ETA:" not in seg, complete, total, metrics))
            continue
        pairs = _line_pairs(seg)
        if pairs:  # the user's own print, e.g. "Test accuracy: 0.978"
            for (key, *_), v in zip(pairs, _line_values(seg)):
                if key not in ("epoch", "step"):
                    printed.append((epoch, key, v))
            continue
        n_unparsed += 1
        if len(unparsed) < MAX_UNPARSED_KEPT:
            unparsed.append((no, seg[:300]))
    for ep, segs in blocks:
        # The epoch's full line: the first complete update without an ETA, else the last complete one
        # of the block's first progress bar (old Keras prints "ETA: 0s" on it).
        fit_total = segs[0][2] if segs else None
        fit_i = next((i for i, s in enumerate(segs) if s[0] and s[2] == fit_total), None)
        if fit_i is None:
            done = [i for i, s in enumerate(segs) if s[1] and s[2] == fit_total]
            fit_i = done[-1] if done else None
        if fit_i is None:
            if segs:
                warnings.append(f"{name}: epoch {ep} has no completed progress line (the run stopped mid-epoch?); skipped")
            continue
        rows += [(ep, k, v) for k, v in segs[fit_i][3].items()]
        # What follows the epoch's full line in its block is model.evaluate(): its last complete update.
        after = [s for s in segs[fit_i + 1:] if s[1] and s[3]]
        if after:
            rows += [(ep, f"eval/{k}", v) for k, v in after[-1][3].items()]
    if too_long:
        warnings.append(f"{name}: {len(too_long)} progress update(s) longer than the limit line_chars="
                        f"{lim.line_chars:,} skipped (first at line {too_long[0]})")
    rows += printed
    if not rows:
        raise LogParseError(name, "Keras output with no completed epoch line")
    step = np.array([r[0] for r in rows], np.int64)
    df = pd.DataFrame({"run": _stem(name), "step": step, "epoch": step.astype(float),
                       "key": [r[1] for r in rows], "value": np.array([r[2] for r in rows], float),
                       "wall_time": np.nan})
    return ParsedLog(name, "keras-console", df[SCALAR_COLUMNS], unparsed, n_unparsed, warnings=warnings)
