"""Per-unit arrays and histograms stay small: compact encoding and thinning of older flushes.

Encoding. A per-unit row (`unit_activity.values_json`; SQLite keeps a BLOB as-is in that column)
is written as a few header bytes and then either
- uint8 (1 byte a unit) when every value is a fraction in [0, 1], as per-unit activity is: the
  value to the nearest 1/200 (0.5 %: the page draws it as a colour and counts units at 1 %), or
- uint16 (2 bytes a unit) on the row's own [min, max] otherwise (dormancy scores: 1/65534 of the
  row's range, e.g. 5e-5 for scores in [0, 3], far finer than any tau); NaN is kept, or
- float32 when the row holds an infinity.
Rows written as JSON text by older versions still read back the same way (`decode`).

Thinning. A run keeps, for each key of `unit_activity` and `histograms`, its newest `RECENT`
rows at full resolution; once a key holds more than `MAX_ROWS` rows, every other row older than
those is deleted, so old history gets sparser (each pass halves it) while its span stays whole.
Rows at a recycle step, and the first row after each, are never deleted: the page's before/after
views of a recycle keep both. Of the scalars, only the per-parameter gradient norms
(`grad_norm/...`, a couple of hundred keys for a BERT) are thinned the same way: the monitor draws
long ranges from the min/max pyramid (core/store/series.py), whose blocks keep the extremes of
every row ever written, so a thinned key still shows its whole envelope; losses, accuracies and
the dead/dormant figures are never thinned.
"""
from __future__ import annotations

import json
import math
import sqlite3

import numpy as np

RECENT = 128  # newest rows per key kept at full resolution
MAX_ROWS = 256  # a key with more rows than this is thinned
THINNED_TABLES = ("unit_activity", "histograms", "scalars")
THINNED_SCALARS = ("grad_norm/",)  # scalar key prefixes that are thinned

_MAGIC = b"AU1"
_U8, _U16, _F32 = b"b", b"q", b"f"
_U8_STEPS = 200
_U16_TOP = 65534  # 65535 marks NaN


def encode(values) -> bytes:
    """Compact bytes for one per-unit array (see the module docstring)."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return _MAGIC + _U8
    # min and max carry a NaN or an infinity through, so a finite pair means a finite row: the
    # common rows take two reductions here, not a mask and a pass per test (a flush encodes two
    # rows per layer, and in a training loop each numpy call costs microseconds).
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return _MAGIC + _U8 + np.rint(a * _U8_STEPS).astype(np.uint8).tobytes()
    if math.isfinite(lo) and math.isfinite(hi):
        return _u16(a, lo, hi)
    if np.isinf(a).any():
        return _MAGIC + _F32 + a.astype("<f4").tobytes()
    finite = np.isfinite(a)  # NaN marks units with no figure
    lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
    return _u16(a, lo, hi, finite)


def _u16(a: np.ndarray, lo: float, hi: float, finite: np.ndarray | None = None) -> bytes:
    """The row quantised on its own range [lo, hi]; where `finite` is False, the NaN mark."""
    span = hi - lo
    x = a if finite is None else np.where(finite, a, lo)
    q = np.rint((x - lo) / span * _U16_TOP) if span > 0 else np.zeros(a.size)
    if finite is not None:
        q = np.where(finite, q, _U16_TOP + 1)
    return _MAGIC + _U16 + np.array([lo, hi], dtype="<f8").tobytes() + q.astype("<u2").tobytes()


def decode(v) -> list[float]:
    """A stored per-unit row (compact bytes, or JSON text from older versions) -> list of floats."""
    if not isinstance(v, (bytes, memoryview)):
        return json.loads(v)
    b = bytes(v)
    if b[:3] != _MAGIC:
        raise ValueError("unit row: unknown encoding")
    codec, body = b[3:4], b[4:]
    if codec == _U8:
        return (np.frombuffer(body, dtype=np.uint8) / _U8_STEPS).tolist()
    if codec == _F32:
        return np.frombuffer(body, dtype="<f4").astype(np.float64).tolist()
    if codec == _U16:
        lo, hi = np.frombuffer(body[:16], dtype="<f8")
        q = np.frombuffer(body[16:], dtype="<u2").astype(np.float64)
        out = np.where(q == _U16_TOP, hi, lo + q * ((hi - lo) / _U16_TOP))  # the row's max comes back exactly
        return np.where(q > _U16_TOP, np.nan, out).tolist()
    raise ValueError(f"unit row: unknown codec {codec!r}")


def pinned_steps(con: sqlite3.Connection, table: str, key: str) -> list[int]:
    """Steps of `key` never thinned: each recycle step and the first stored step after it."""
    try:
        rec = [s for (s,) in con.execute("SELECT DISTINCT step FROM events WHERE kind = 'recycle'")]
    except sqlite3.OperationalError:  # a store from before the control path: no events table
        return []
    keep = set(rec)
    for s in rec:
        nxt = con.execute(f"SELECT MIN(step) FROM {table} WHERE key = ? AND step > ?", (key, s)).fetchone()[0]
        if nxt is not None:
            keep.add(nxt)
    return sorted(keep)


def thin(con: sqlite3.Connection, table: str, key: str, recent: int = RECENT) -> int:
    """Delete every other row of `key` older than its newest `recent` rows, except pinned steps.
    Returns how many rows went. Call inside the writer's transaction."""
    if table not in THINNED_TABLES:
        raise ValueError(f"cannot thin {table!r}")
    cut = con.execute(f"SELECT step FROM {table} WHERE key = ? ORDER BY step DESC LIMIT 1 OFFSET ?",
                      (key, int(recent) - 1)).fetchone()
    if cut is None:
        return 0
    pins = pinned_steps(con, table, key)
    spare = f" AND step NOT IN ({','.join('?' * len(pins))})" if pins else ""  # NOT IN (NULL) would spare all
    cur = con.execute(
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, step, ROW_NUMBER() OVER (ORDER BY step, id) AS rn "
        f"FROM {table} WHERE key = ? AND step < ?) WHERE rn % 2 = 0{spare})",
        (key, cut[0], *pins))
    return cur.rowcount


class Thinner:
    """The writer's bookkeeping: rows per (table, key) in memory, so a flush costs one counter
    check per row and a thinning pass only when a key passes `max_rows`."""

    def __init__(self, con: sqlite3.Connection, recent: int = RECENT, max_rows: int = MAX_ROWS):
        if not 1 <= recent < max_rows:
            raise ValueError(f"need 1 <= recent < max_rows, got {recent}, {max_rows}")
        self.con, self.recent, self.max_rows = con, int(recent), int(max_rows)
        self.rows: dict[tuple[str, str], int] = {}

    def added(self, table: str, key: str) -> int:
        """Count one new row of `key`; returns how many rows a thinning pass deleted (mostly 0)."""
        k = (table, key)
        n = self.rows.get(k)
        if n is None:  # first row of this key in this process: count what a resumed run already has
            n = self.con.execute(f"SELECT COUNT(*) FROM {table} WHERE key = ?", (key,)).fetchone()[0] - 1
        n += 1
        gone = thin(self.con, table, key, self.recent) if n > self.max_rows else 0
        self.rows[k] = n - gone
        return gone
