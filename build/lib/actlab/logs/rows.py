"""(line, key, value) triples from a text log -> the scalar table, with step and epoch taken from
the counters printed on the same or an earlier line."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .parsed import EPOCH_KEYS, STEP_KEYS


class _Rows:
    """Values collected per key as (line numbers, values) chunks, each chunk in line order.
    Keys are ordered by where they first appear (line, then position in the line), so the template
    path and the line-by-line path give the same table without sorting millions of rows."""

    def __init__(self):
        self.chunks: dict[str, list] = {}
        self.first: dict[str, tuple] = {}

    def add(self, key: str, pos: int, lines: np.ndarray, values: np.ndarray):
        if len(lines):
            self.chunks.setdefault(key, []).append((lines, values))
            self.first[key] = min(self.first.get(key, (math.inf, 0)), (int(lines[0]), pos))

    def arrays(self):
        keys = sorted(self.chunks, key=self.first.__getitem__)
        lines, vals, sizes = [], [], []
        for k in keys:
            ls, vs = zip(*self.chunks[k])
            l, v = (ls[0], vs[0]) if len(ls) == 1 else (np.concatenate(ls), np.concatenate(vs))
            if len(ls) > 1:
                o = np.argsort(l, kind="stable")
                l, v = l[o], v[o]
            lines.append(l)
            vals.append(v)
            sizes.append(len(l))
        kc = np.repeat(np.arange(len(keys), dtype=np.int32), sizes)
        return keys, np.concatenate(lines).astype(np.int64, copy=False), kc, np.concatenate(vals).astype(float, copy=False)



def _ffill(a: np.ndarray) -> np.ndarray:
    idx = np.where(np.isnan(a), 0, np.arange(len(a)))
    np.maximum.accumulate(idx, out=idx)
    out = a[idx]
    return out


def _runs(keep: list[bool], bounds: np.ndarray) -> list[slice]:
    """Row slices of the kept keys, adjacent keys merged."""
    out = []
    for i, k in enumerate(keep):
        if not k:
            continue
        if out and out[-1].stop == bounds[i]:
            out[-1] = slice(out[-1].start, bounds[i + 1])
        else:
            out.append(slice(bounds[i], bounds[i + 1]))
    return out


def _lines_to_scalars(keys: list[str], lines: np.ndarray, kc: np.ndarray, val: np.ndarray, run: str,
                      n_lines: int) -> pd.DataFrame:
    """Rows grouped by key, each key's rows in line order -> scalar schema. Step and epoch come from
    the same line, else from the last line that printed them (an eval line after a train line),
    else from order. Arrays indexed by line number instead of sorting: this runs on millions of rows."""
    # Each key's rows are one block of kc (arrays() groups them), so a key is a slice, not a mask.
    bounds = np.searchsorted(kc, np.arange(len(keys) + 1))

    def per_line(codes):
        out = np.full(n_lines + 2, np.nan)
        # Later keys first, so on a line with two counters the first one printed wins.
        for c in sorted(codes, reverse=True):
            a, b = bounds[c], bounds[c + 1]
            out[lines[a:b]] = val[a:b]
        return out, bool(codes)

    step_codes = [i for i, k in enumerate(keys) if k in STEP_KEYS]
    epoch_codes = [i for i, k in enumerate(keys) if k in EPOCH_KEYS]
    step, has_step = per_line(step_codes)
    epoch, has_epoch = per_line(epoch_codes)
    if step_codes or epoch_codes:
        kept = _runs([i not in step_codes + epoch_codes for i in range(len(keys))], bounds)
        # Counters printed first (epoch=, step= ...) leave one run of kept rows: a view, no copy.
        lines, kc, val = (a[kept[0]] if len(kept) == 1 else
                          np.concatenate([a[s] for s in kept]) if kept else a[:0] for a in (lines, kc, val))
    epoch = _ffill(epoch)
    if has_step:
        step = _ffill(step)
        step = np.where(np.isnan(step), epoch if has_epoch else 0.0, step)
    elif has_epoch:
        step = epoch
    if has_step or has_epoch:
        # Cast per line (~1M), not per row (~5M): one row-sized array instead of three.
        s = np.nan_to_num(step).astype(np.int64)[lines]  # a copy: step may be epoch itself
    else:  # no counter anywhere: the n-th value of a key is step n
        starts = np.searchsorted(kc, np.arange(len(keys)))
        s = np.arange(len(kc)) - starts[kc]
    n = len(kc)
    # Categoricals: the run and a handful of keys repeated millions of times, at one byte a row.
    return pd.DataFrame({
        "run": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=[run]),
        "step": s if s.dtype == np.int64 else np.nan_to_num(np.asarray(s, float), copy=False).astype(np.int64),
        "epoch": epoch[lines],
        "key": pd.Categorical.from_codes(kc, categories=keys),
        "value": val,
        "wall_time": np.full(n, np.nan),
    }, copy=False)  # no consolidating copy: these arrays are ours
