"""The min/max pyramid behind the chart queries of core/store/series.py: its table, how the
writer keeps it, and how it is rebuilt.

Table `scalar_blocks` holds one row per key, level and block of 8**level steps: the block's lowest
and highest row (step and value) and its row count. The writer updates it in the same transaction
as the scalars (`add_rows`); a row that moves no extreme of its open blocks is only counted
(`OpenBlocks`). Levels narrower than twice a key's log interval are not kept (`min_level`).
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import numpy as np

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


_ADD_N = "UPDATE scalar_blocks SET n = n + ? WHERE key = ? AND level = ? AND block = ?"


class OpenBlocks:
    """A writer's newest block per key and level: the block, the range of values this writer has
    folded into it, and how many of the key's rows are on disk for it. Every block holds at least
    that range, so a row inside it moves no extreme and is only counted: most rows of a long block
    are (a flush of a bert-base watch upserted ~5 blocks per scalar, each dirtying a page of its
    own). The count goes to disk with the block's next extreme, when the key moves on to its next
    block, or at `write_pending` (the writer's close); until then a block's `n` may lag, and nothing
    reads `n` (queries read the extremes, and `_recompute` counts the raw rows).

    A row is checked against the key's lowest level first: a higher level's block holds that one
    (BASE-aligned) and has folded every row it did, so a row inside it is inside them all."""

    def __init__(self):
        # key -> [rows folded, lowest level, {level: [block, rows on disk, lo, hi]}]
        self.keys: dict[str, list] = {}

    def fold(self, key: str, low: int, step: int, value: float, out: list, closed: list) -> None:
        """One row of `key` into its levels from `low` up: upsert rows into `out` for the levels
        whose extreme it moves or whose block it starts; `closed` gets the counts of blocks the key
        has moved on from (for `_ADD_N`)."""
        k = self.keys.get(key)
        if k is None:
            k = self.keys[key] = [0, low, {}]
        if k[1] != low:  # the key's lowest level rose (its gap became known): settle the levels below
            for lvl in [lvl for lvl in k[2] if lvl < low]:
                e = k[2].pop(lvl)
                if k[0] > e[1]:
                    closed.append((k[0] - e[1], key, lvl, e[0]))
            k[1] = low
        k[0] += 1
        first = k[2].get(low)
        if first is not None and first[0] == step // BASE ** low and first[2] <= value <= first[3]:
            return
        for lvl in LEVELS:
            if lvl < low:
                continue
            block = step // BASE ** lvl
            e = k[2].get(lvl)
            if e is not None and e[0] == block:
                if e[2] <= value <= e[3]:
                    continue
                out.append((key, lvl, block, k[0] - e[1], step, value, step, value))
                e[1:] = [k[0], min(e[2], value), max(e[3], value)]
                continue
            if e is not None and k[0] - 1 > e[1]:
                closed.append((k[0] - 1 - e[1], key, lvl, e[0]))
            out.append((key, lvl, block, 1, step, value, step, value))
            k[2][lvl] = [block, k[0], value, value]

    def pending(self, keys=None) -> list[tuple[int, str, int, int]]:
        """(count, key, level, block) of the rows counted and not on disk, for `_ADD_N`; marks them written."""
        out = []
        for key, k in self.keys.items():
            if keys is not None and key not in keys:
                continue
            for lvl, e in k[2].items():
                if k[0] > e[1]:
                    out.append((k[0] - e[1], key, lvl, e[0]))
                    e[1] = k[0]
        return out

    def forget(self, keys) -> None:
        for key in keys:
            self.keys.pop(key, None)


def write_pending(con: sqlite3.Connection, open_blocks: OpenBlocks) -> None:
    """Write the counts `open_blocks` holds (inside the writer's transaction)."""
    if rows := open_blocks.pending():
        con.executemany(_ADD_N, rows)


def add_rows(con: sqlite3.Connection, rows: Iterable[tuple[str, int, float | None]],
             rewritten: Iterable[tuple[str, int]], levels: dict[str, int], open_blocks: OpenBlocks) -> None:
    """Fold (key, step, value) rows into the pyramid; call inside the writer's transaction, after
    the rows are written. Rows with no value (non-finite, stored as NULL) are not drawn and not
    folded. A rewritten (key, step) may have held its blocks' extreme, so those blocks are
    recomputed from the raw rows (rare: a trainer writes each step once). `levels`: the writer's
    cache of `min_level` per key, filled here once a key has the two rows that fix it.
    `open_blocks`: the writer's OpenBlocks (rows that move no extreme are only counted)."""
    rows = [r for r in rows if r[2] is not None]
    low = {}
    for k in {r[0] for r in rows}:
        got = levels.get(k)
        if got is None:
            gap = first_gap(con, k)
            got = level_for_gap(gap)
            if gap is not None:
                levels[k] = got
        low[k] = got
    out, closed = [], []
    for k, s, v in rows:
        open_blocks.fold(k, low[k], int(s), v, out, closed)
    if out:
        con.executemany(_UPSERT, out)
    if closed:
        con.executemany(_ADD_N, closed)
    rewritten = list(rewritten)
    if rewritten:
        # The recompute may narrow a block below the range the writer knows: count what is
        # pending, then start those keys afresh.
        keys = {k for k, _ in rewritten}
        if pend := open_blocks.pending(keys):
            con.executemany(_ADD_N, pend)
        open_blocks.forget(keys)
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
