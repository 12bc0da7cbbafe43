"""Reading scalar series at the resolution of a chart: "at most P points of these keys between
steps a and b", downsampled IN the query so the cost follows P, not the run's length.

Downsampling is min/max per bucket: each of P buckets of the step range keeps its lowest and its
highest point (real rows, with their real steps), plus the first and last row of each key. A row
that is the highest (or lowest) within two bucket widths either side of it always survives (one
width on the raw path), so a one-step loss spike or a dead-rate jump never vanishes, at any zoom.

To stay fast at 10M rows the writer keeps a pyramid of min/max blocks next to the raw rows
(core/store/blocks.py). A query picks the coarsest level whose blocks are still narrower than one
bucket, reads those blocks through the primary key, and reads raw rows only for the partial blocks
at the two ends of the range. A run written before the pyramid existed is read with a plain
GROUP BY over the (key, step) index: correct, just slower on big runs (`blocks.build_blocks` adds
the pyramid to such a run).

`SeriesFollower` is what a live monitor holds per run: the downsampled frame (at most ~2·P rows
per key, never the whole run), the newest histograms, and on refresh only the rows written since.
"""
from __future__ import annotations

import json
import sqlite3

import numpy as np

from .blocks import BASE, LEVELS, has_blocks, min_level
from .units import decode as decode_units

def _minmax_buckets(steps: np.ndarray, values: np.ndarray, lo: int, hi: int, points: int) -> np.ndarray:
    """Indices of the min and max point per bucket of [lo, hi], plus the first and last point;
    sorted by step. steps need not be sorted."""
    if len(steps) == 0:
        return np.zeros(0, np.int64)
    span = max(hi - lo + 1, 1)
    bucket = np.clip((steps - lo) * points // span, 0, points - 1)
    order = np.lexsort((values, bucket))
    b = bucket[order]
    first = np.r_[0, np.flatnonzero(b[1:] != b[:-1]) + 1]
    last = np.r_[first[1:] - 1, len(order) - 1]
    keep = np.unique(np.r_[order[first], order[last], np.argmin(steps), np.argmax(steps)])
    return keep[np.argsort(steps[keep], kind="stable")]


def step_range(con: sqlite3.Connection, keys: list[str]) -> tuple[int, int] | None:
    """(first, last) step over these keys: two index seeks per key."""
    los, his = [], []
    for k in keys:
        # Two statements: SQLite answers a lone MIN or MAX with one index seek, but scans for both.
        lo = con.execute("SELECT MIN(step) FROM scalars WHERE key = ?", (k,)).fetchone()[0]
        hi = con.execute("SELECT MAX(step) FROM scalars WHERE key = ?", (k,)).fetchone()[0]
        if lo is not None:
            los.append(lo), his.append(hi)
    return (min(los), max(his)) if los else None


def _raw(con, key: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    rows = con.execute("SELECT step, value FROM scalars WHERE key = ? AND step BETWEEN ? AND ? AND value IS NOT NULL",
                       (key, lo, hi)).fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0)
    a = np.array(rows, dtype=np.float64)
    return a[:, 0].astype(np.int64), a[:, 1]


def _grouped_raw(con, key: str, lo: int, hi: int, points: int) -> tuple[np.ndarray, np.ndarray]:
    """No pyramid (an older run): min and max per bucket by GROUP BY over the (key, step) index.
    SQLite gives a bare column the value from the row that holds the single MIN/MAX."""
    span = hi - lo + 1
    parts = []
    for agg in ("MIN", "MAX"):
        parts += con.execute(f"SELECT step, {agg}(value) FROM scalars WHERE key = ? AND step BETWEEN ? AND ? "
                             f"AND value IS NOT NULL GROUP BY (step - ?) * ? / ?", (key, lo, hi, lo, points, span)).fetchall()
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0)
    a = np.array(parts, dtype=np.float64)
    return a[:, 0].astype(np.int64), a[:, 1]


def query(con: sqlite3.Connection, keys: list[str], lo: int | None = None, hi: int | None = None,
          points: int = 800) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """At most ~2·points (step, value) pairs per key between steps lo and hi (inclusive; None = the
    run's first/last step), min and max per bucket, sorted by step. Keys with no rows are left out."""
    points = max(int(points), 1)
    if lo is None or hi is None:
        r = step_range(con, keys)
        if r is None:
            return {}
        lo = r[0] if lo is None else lo
        hi = r[1] if hi is None else hi
    lo, hi = int(lo), int(hi)
    if hi < lo:
        return {}
    width = (hi - lo + 1) / points
    levels = [lvl for lvl in LEVELS if BASE ** lvl <= width]
    pyramid = bool(levels) and has_blocks(con)
    out = {}
    for k in keys:
        if not levels or (pyramid and levels[-1] < min_level(con, k)):
            # Few rows per bucket, or blocks this narrow are not kept for this key: raw rows are cheap.
            s, v = _raw(con, k, lo, hi)
        elif not pyramid:
            s, v = _grouped_raw(con, k, lo, hi, points)
        else:
            w = BASE ** levels[-1]
            b_lo, b_hi = -(-lo // w), (hi + 1) // w - 1  # blocks wholly inside [lo, hi]
            if b_lo > b_hi:
                s, v = _raw(con, k, lo, hi)
            else:
                # Whole blocks grouped into `points` block-aligned buckets inside SQLite: per bucket
                # the block holding the lowest min and the one holding the highest max. A bare
                # column next to a single MIN/MAX comes from that row (documented SQLite behaviour).
                n_blocks = b_hi - b_lo + 1
                rows = []
                for cols in ("min_step, MIN(min_value)", "max_step, MAX(max_value)"):
                    rows += con.execute(f"SELECT {cols} FROM scalar_blocks WHERE key = ? AND level = ? AND block BETWEEN ? AND ? "
                                        f"GROUP BY (block - ?) * ? / ?", (k, levels[-1], b_lo, b_hi, b_lo, points, n_blocks)).fetchall()
                a = np.array(rows, dtype=np.float64).reshape(-1, 2)
                s1, v1 = _raw(con, k, lo, b_lo * w - 1)
                s2, v2 = _raw(con, k, (b_hi + 1) * w, hi)
                s = np.r_[s1, a[:, 0].astype(np.int64), s2]
                v = np.r_[v1, a[:, 1], v2]
        if len(s) and levels:
            # The first and last row in range (two seeks): the line starts and ends where the data does.
            ends = [con.execute(f"SELECT step, value FROM scalars WHERE key = ? AND step BETWEEN ? AND ? AND value IS NOT NULL "
                                f"ORDER BY step {d} LIMIT 1", (k, lo, hi)).fetchone() for d in ("ASC", "DESC")]
            s = np.r_[s, [e[0] for e in ends if e]].astype(np.int64)
            v = np.r_[v, [e[1] for e in ends if e]].astype(np.float64)
        if len(s):
            keep = _minmax_buckets(s, v, lo, hi, points)
            out[k] = (s[keep], v[keep])
    return out


def clock(con: sqlite3.Connection, key: str, lo: int, hi: int, samples: int = 64) -> np.ndarray:
    """[step, epoch, wall_time] rows of `key` at ~samples evenly spaced steps, by index seeks. Used to
    place downsampled points on the epoch or wall-time axis by interpolation (sub-pixel at chart
    resolution), without reading every row's epoch and wall time."""
    rows = []
    for t in np.unique(np.linspace(lo, hi, max(samples, 2)).astype(np.int64)).tolist():
        r = con.execute("SELECT step, epoch, wall_time FROM scalars WHERE key = ? AND step >= ? ORDER BY step LIMIT 1",
                        (key, t)).fetchone()
        if r is not None:
            rows.append((r[0], np.nan if r[1] is None else r[1], r[2]))
    return np.unique(np.array(rows, dtype=np.float64).reshape(-1, 3), axis=0)


def keys(con: sqlite3.Connection) -> list[str]:
    """Distinct scalar keys by skip-scan over the (key, step) index: one seek per key, so a
    10M-row run answers as fast as a small one (SELECT DISTINCT would walk the whole index)."""
    return [r[0] for r in con.execute(
        "WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM scalars UNION ALL "
        "SELECT (SELECT MIN(key) FROM scalars WHERE key > k.key) FROM k WHERE k.key IS NOT NULL) "
        "SELECT key FROM k WHERE key IS NOT NULL")]


def _latest(con, table: str, value_col: str, after_id: int, limit: int) -> list[dict]:
    """Blob rows (histograms, unit activity) after after_id, at most the newest `limit`."""
    rows = con.execute(f"SELECT id, step, epoch, key, {value_col} FROM {table} WHERE id > ? ORDER BY id DESC LIMIT ?",
                       (after_id, limit)).fetchall()[::-1]
    return rows


class SeriesFollower:
    """A live view of one run that never holds (or reads) the whole run.

    First poll: the downsampled series of every key at `points` buckets over the whole run, the
    newest `max_blobs` histogram and activity rows. Each later poll: only rows with a larger id
    than any seen; the frame is re-bucketed in memory (min/max of min/max keeps every extreme)
    once a key holds more than 3·points rows. Same attributes as core.runs.RunFollower."""

    def __init__(self, store, name: str, points: int = 800, max_blobs: int = 200):
        import pandas as pd

        self.store, self.name, self.points, self.max_blobs = store, name, int(points), int(max_blobs)
        self.scalar_cursor = self.hist_cursor = self.unit_cursor = 0
        self.scalars = pd.DataFrame(columns=["run", "step", "epoch", "key", "value", "wall_time"])
        self.histograms: list[dict] = []
        self.units: list[dict] = []
        self.status = None
        self.config: dict = {}
        self.layers: dict = {}
        self._started = False

    def poll(self) -> int:
        with self.store.open(self.name) as reader:
            con = reader.con
            n = self._poll_scalars(con)
            hists = _latest(con, "histograms", "counts, edges", self.hist_cursor, self.max_blobs)
            units = _latest(con, "unit_activity", "values_json", self.unit_cursor, self.max_blobs)
            self.status, meta = reader.status(), reader.meta
            self.config, self.layers = meta.get("config", {}), meta.get("layers", {})
        if hists:
            self.hist_cursor = hists[-1][0]
            new = [{"id": i, "step": s, "epoch": e, "key": k, "counts": json.loads(c), "edges": json.loads(ed)}
                   for i, s, e, k, c, ed in hists]
            self.histograms = (self.histograms + new)[-self.max_blobs:]
        if units:
            self.unit_cursor = units[-1][0]
            new = [{"id": i, "step": s, "epoch": e, "key": k, "values": decode_units(v)} for i, s, e, k, v in units]
            self.units = (self.units + new)[-self.max_blobs:]
        return n + len(hists) + len(units)

    def _poll_scalars(self, con) -> int:
        import pandas as pd

        if not self._started:
            self._started = True
            cursor = con.execute("SELECT MAX(id) FROM scalars").fetchone()[0] or 0
            names = keys(con)
            rng = step_range(con, names)
            if rng is None:
                self.scalar_cursor = cursor
                return 0
            data = query(con, names, rng[0], rng[1], self.points)
            clock_key = "loss/train" if "loss/train" in data else next(iter(data), None)
            cols = {"step": [], "value": [], "key": []}
            for k, (st, v) in data.items():
                cols["step"].append(st), cols["value"].append(v), cols["key"].append(np.full(len(st), k, dtype=object))
            if data:
                # One frame built from whole columns: ten small frames and a concat cost more than the query.
                steps = np.concatenate(cols["step"])
                clk = clock(con, clock_key, *rng)
                nan = np.full(len(steps), np.nan)
                self.scalars = pd.DataFrame({
                    "run": np.full(len(steps), self.name, dtype=object), "step": steps,
                    "epoch": np.interp(steps, clk[:, 0], clk[:, 1]) if len(clk) else nan,
                    "key": np.concatenate(cols["key"]), "value": np.concatenate(cols["value"]),
                    "wall_time": np.interp(steps, clk[:, 0], clk[:, 2]) if len(clk) else nan})
            self.scalar_cursor = cursor
            return len(self.scalars)
        new = pd.read_sql_query("SELECT id, step, epoch, key, value, wall_time FROM scalars WHERE id > ? ORDER BY id",
                                con, params=[self.scalar_cursor])
        if new.empty:
            return 0
        self.scalar_cursor = int(new["id"].max())
        new = new.drop(columns="id").assign(run=self.name)[list(self.scalars.columns)]
        new["value"] = new["value"].astype(float)
        self.scalars = new if self.scalars.empty else pd.concat([self.scalars, new], ignore_index=True)
        counts = self.scalars["key"].value_counts()
        if (counts > 3 * self.points).any():
            self._rebucket()
        return len(new)

    def _rebucket(self):
        """Thin each key back to min/max per bucket over its whole step range, in memory."""
        df = self.scalars.dropna(subset=["value"])
        lo, hi = int(df["step"].min()), int(df["step"].max())
        parts = []
        for _, g in df.groupby("key", sort=False):
            keep = _minmax_buckets(g["step"].to_numpy(np.int64), g["value"].to_numpy(float), lo, hi, self.points)
            parts.append(g.iloc[keep])
        import pandas as pd

        self.scalars = pd.concat(parts, ignore_index=True)
