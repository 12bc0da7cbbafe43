"""Reading scalar series at the resolution of a chart: "at most P points of these keys between
steps a and b", downsampled IN the query so the cost follows P, not the run's length.

Downsampling is min/max per bucket: each of P buckets of the step range keeps its lowest and its
highest point (real rows, with their real steps), plus the first and last row of each key. A row
that is the highest (or lowest) within two bucket widths either side of it always survives (one
width on the raw path), so a one-step loss spike or a dead-rate jump never vanishes, at any zoom.

To stay fast at 10M rows the writer keeps a pyramid of min/max blocks next to the raw rows
(table `scalar_blocks`, one row per key, level and block of 8**level steps), updated in the same
transaction as the scalars (`add_rows`). A query picks the coarsest level whose blocks are still
narrower than one bucket, reads those blocks through the primary key, and reads raw rows only for
the partial blocks at the two ends of the range. A run written before the pyramid existed is read
with a plain GROUP BY over the (key, step) index: correct, just slower on big runs
(`build_blocks` adds the pyramid to such a run).

`SeriesFollower` is what a live monitor holds per run: the downsampled frame (at most ~2·P rows
per key, never the whole run), the newest histograms, and on refresh only the rows written since.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

import numpy as np

from .units import decode as decode_units

BASE = 8
LEVELS = range(1, 8)  # block widths 8 .. 2,097,152 steps

SCHEMA = """
CREATE TABLE IF NOT EXISTS scalar_blocks (
    key TEXT NOT NULL, level INTEGER NOT NULL, block INTEGER NOT NULL, n INTEGER NOT NULL,
    min_step INTEGER NOT NULL, min_value REAL NOT NULL, max_step INTEGER NOT NULL, max_value REAL NOT NULL,
    PRIMARY KEY (key, level, block)) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO scalar_blocks(key, level, block, n, min_step, min_value, max_step, max_value) VALUES (?,?,?,?,?,?,?,?)
ON CONFLICT(key, level, block) DO UPDATE SET n = n + excluded.n,
    min_step = CASE WHEN excluded.min_value < min_value THEN excluded.min_step ELSE min_step END,
    min_value = MIN(min_value, excluded.min_value),
    max_step = CASE WHEN excluded.max_value > max_value THEN excluded.max_step ELSE max_step END,
    max_value = MAX(max_value, excluded.max_value)
"""


def existing(con: sqlite3.Connection, pairs: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (key, step) pairs that already have a row: an index seek each. Call before a write that
    may replace them (INSERT OR REPLACE), and pass the result to add_rows."""
    return [(k, int(s)) for k, s in pairs
            if con.execute("SELECT 1 FROM scalars WHERE key = ? AND step = ?", (k, int(s))).fetchone()]


def add_rows(con: sqlite3.Connection, rows: Iterable[tuple[str, int, float | None]],
             rewritten: Iterable[tuple[str, int]] = (), levels: dict[str, int] | None = None) -> None:
    """Fold (key, step, value) rows into the pyramid; call inside the writer's transaction, after
    the rows are written. Rows with no value (non-finite, stored as NULL) are not drawn and not
    folded. A rewritten (key, step) may have held its blocks' extreme, so those blocks are
    recomputed from the raw rows (rare: a trainer writes each step once). `levels`: the writer's
    cache of `min_level` per key, filled here once a key has the two rows that fix it."""
    rows = [r for r in rows if r[2] is not None]
    low = {}
    for k in {r[0] for r in rows}:
        got = levels.get(k) if levels is not None else None
        if got is None:
            gap = first_gap(con, k)
            got = level_for_gap(gap)
            if gap is not None and levels is not None:
                levels[k] = got
        low[k] = got
    out = [(k, lvl, int(s) // BASE ** lvl, 1, int(s), v, int(s), v)
           for k, s, v in rows for lvl in LEVELS if lvl >= low[k]]
    if out:
        con.executemany(_UPSERT, out)
    for k, s in rewritten:
        for lvl in LEVELS:
            _recompute(con, k, lvl, s // BASE ** lvl)


def min_level(con: sqlite3.Connection, key: str) -> int:
    """The lowest level kept for `key`: blocks narrower than twice the gap between its first two
    rows would mostly copy one raw row each (a key logged every 50 steps has no 8- or 64-step
    blocks: at 2000 flushes of a bert-base watch they were most of the database). `query` reads raw
    rows below it (fewer than 2 * BASE per bucket). The gap can only grow (thinning may drop the
    second row), so a level is never read where it was not kept."""
    return level_for_gap(first_gap(con, key))


def first_gap(con: sqlite3.Connection, key: str) -> int | None:
    """Steps between the key's first two rows (None: it has fewer than two)."""
    first = con.execute("SELECT step FROM scalars WHERE key = ? ORDER BY step LIMIT 2", (key,)).fetchall()
    return first[1][0] - first[0][0] if len(first) == 2 else None


def level_for_gap(gap: int | None) -> int:
    if gap is None:
        return LEVELS[0]
    return next((lvl for lvl in LEVELS if BASE ** lvl >= 2 * gap), LEVELS[-1])


def _recompute(con: sqlite3.Connection, key: str, level: int, block: int) -> None:
    """One block from the raw rows in its step range (an index range scan)."""
    w = BASE ** level
    args = (key, block * w, block * w + w - 1)
    where = "FROM scalars WHERE key = ? AND step BETWEEN ? AND ? AND value IS NOT NULL"
    n = con.execute(f"SELECT COUNT(*) {where}", args).fetchone()[0]
    if not n:
        con.execute("DELETE FROM scalar_blocks WHERE key = ? AND level = ? AND block = ?", (key, level, block))
        return
    lo = con.execute(f"SELECT step, MIN(value) {where}", args).fetchone()
    hi = con.execute(f"SELECT step, MAX(value) {where}", args).fetchone()
    con.execute("INSERT OR REPLACE INTO scalar_blocks(key, level, block, n, min_step, min_value, max_step, max_value) "
                "VALUES (?,?,?,?,?,?,?,?)", (key, level, block, n, lo[0], lo[1], hi[0], hi[1]))


def trim_after(con: sqlite3.Connection, step: int) -> None:
    """After the raw rows past `step` were deleted (a resume from a checkpoint): drop the blocks
    that now lie wholly past it and recompute the one per level that straddles it."""
    if not has_blocks(con):
        return
    for lvl in LEVELS:
        b = step // BASE ** lvl
        con.execute("DELETE FROM scalar_blocks WHERE level = ? AND block > ?", (lvl, b))
        for (k,) in con.execute("SELECT key FROM scalar_blocks WHERE level = ? AND block = ?", (lvl, b)).fetchall():
            _recompute(con, k, lvl, b)


def has_blocks(con: sqlite3.Connection) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='scalar_blocks'").fetchone() is not None


def ensure_blocks(con: sqlite3.Connection) -> None:
    """Build the pyramid if the run has scalar rows but no blocks (written before it existed)."""
    con.executescript(SCHEMA)
    if con.execute("SELECT EXISTS(SELECT 1 FROM scalars WHERE value IS NOT NULL)").fetchone()[0] and \
            not con.execute("SELECT EXISTS(SELECT 1 FROM scalar_blocks)").fetchone()[0]:
        build_blocks(con)


def build_blocks(con: sqlite3.Connection, chunk: int = 500_000) -> int:
    """(Re)build the pyramid from the raw rows, streaming in (key, step) order; returns rows read.
    For runs written before the pyramid existed, and for the scale benchmark's bulk load."""
    con.executescript(SCHEMA)
    with con:
        con.execute("DELETE FROM scalar_blocks")
        cur = con.execute("SELECT key, step, value FROM scalars WHERE value IS NOT NULL ORDER BY key, step")
        total = 0
        while batch := cur.fetchmany(chunk):
            total += len(batch)
            keys = np.array([r[0] for r in batch], dtype=object)
            steps = np.fromiter((r[1] for r in batch), np.int64, len(batch))
            values = np.fromiter((r[2] for r in batch), np.float64, len(batch))
            key_ids, key_names = _codes(keys)
            for lvl in LEVELS:
                blocks = steps // BASE ** lvl
                # Groups are runs of equal (key, block): rows arrive sorted by key then step.
                starts = np.flatnonzero(np.r_[True, (key_ids[1:] != key_ids[:-1]) | (blocks[1:] != blocks[:-1])])
                lo_i, hi_i = _argext(values, starts)
                counts = np.diff(np.r_[starts, len(values)])
                con.executemany(_UPSERT, zip(key_names[key_ids[starts]].tolist(), [lvl] * len(starts),
                                             blocks[starts].tolist(), counts.tolist(), steps[lo_i].tolist(),
                                             values[lo_i].tolist(), steps[hi_i].tolist(), values[hi_i].tolist()))
    return total


def _codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names, ids = np.unique(keys.astype(str), return_inverse=True)
    return ids, names.astype(object)


def _argext(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the minimum and of the maximum within each group [starts[i], starts[i+1]); ties go
    to the earliest row, as in the writer's incremental upsert (strict comparisons)."""
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(values)]))
    order = np.arange(len(values))
    by_min = np.lexsort((order, values, group))
    by_max = np.lexsort((order, -values, group))
    first = np.r_[0, np.flatnonzero(group[by_min][1:] != group[by_min][:-1]) + 1]
    return by_min[first], by_max[first]


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
