"""What every live source keeps per run: the scalars at chart resolution, as the store's
SeriesFollower keeps ours (min/max per bucket, the first and last point of each key), so a run
with a million points costs the page a few thousand rows, and each refresh only adds the new ones."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..store.series import _minmax_buckets

COLUMNS = ["run", "step", "epoch", "key", "value", "wall_time"]


@dataclass
class SourceStatus:
    """Same fields the monitor reads from a run store's status: state and reason."""
    state: str = "idle"          # running / idle / finished / failed / stopped / ended
    reason: str | None = None


@dataclass
class SeriesFrame:
    """The downsampled scalars of one followed run, plus notes (series ended, records skipped)."""
    name: str
    points: int = 800
    scalars: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))
    notes: list[str] = field(default_factory=list)
    rows_seen: int = 0  # every row ever added, before thinning

    def add(self, df: pd.DataFrame | None) -> int:
        """Append new rows (any columns order; run is set to this source's name) and thin each key
        back to ~2 points per bucket once it holds more than 3x the chart's points."""
        if df is None or not len(df):
            return 0
        read = len(df)
        self.rows_seen += read
        if len(df) > 3 * self.points:  # a first load: thin before anything is copied
            df = thin(df, self.points)
        n = len(df)
        df = pd.DataFrame({"run": np.full(n, self.name, dtype=object), "step": df["step"].to_numpy(np.int64),
                           "epoch": df["epoch"].to_numpy(float) if "epoch" in df else np.full(n, np.nan),
                           "key": np.asarray(df["key"], dtype=object), "value": df["value"].to_numpy(float),
                           "wall_time": df["wall_time"].to_numpy(float)})
        self.scalars = df if self.scalars.empty else pd.concat([self.scalars, df], ignore_index=True)
        if (self.scalars["key"].value_counts() > 3 * self.points).any():
            self.scalars = thin(self.scalars, self.points)
        return read


def thin(df: pd.DataFrame, points: int) -> pd.DataFrame:
    """Min/max per bucket of each key's own step range (every extreme survives a re-thinning)."""
    df = df[np.isfinite(df["value"].to_numpy(float))]
    parts = []
    for _, g in df.groupby("key", sort=False, observed=True):
        if len(g) <= 2 * points:
            parts.append(g)
            continue
        steps, values = g["step"].to_numpy(np.int64), g["value"].to_numpy(float)
        if (np.diff(steps) >= 0).all():
            keep = _sorted_minmax(steps, values, points)
        else:  # steps out of order (a restarted writer): the store's general version sorts first
            keep = _minmax_buckets(steps, values, int(steps.min()), int(steps.max()), points)
        parts.append(g.iloc[keep])
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[0:0]


def _sorted_minmax(steps: np.ndarray, values: np.ndarray, points: int) -> np.ndarray:
    """_minmax_buckets for steps already in order: the buckets are then contiguous runs of rows,
    so the min and max of each come from reduceat in one pass, with no sort (a first load of a
    million points spends most of its time here otherwise)."""
    lo, span = int(steps[0]), max(int(steps[-1]) - int(steps[0]) + 1, 1)
    bucket = (steps - lo) * points // span
    starts = np.r_[0, np.flatnonzero(np.diff(bucket)) + 1]
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(steps)]))
    # Ties as in the store's version: the earliest row at the min, the latest at the max.
    hit_min = np.flatnonzero(values == np.minimum.reduceat(values, starts)[seg])
    hit_max = np.flatnonzero(values == np.maximum.reduceat(values, starts)[seg])
    first_min = hit_min[np.r_[0, np.flatnonzero(np.diff(seg[hit_min])) + 1]]
    last_max = hit_max[np.r_[np.flatnonzero(np.diff(seg[hit_max])), len(hit_max) - 1]]
    return np.unique(np.r_[first_min, last_max, 0, len(steps) - 1])
