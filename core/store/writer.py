"""RunWriter: what the one trainer process of a run writes (every call is one transaction)."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from . import blocks, commands, units
from .checkpoint import Checkpointer
from .schema import STATES, STORE_ERRORS, connect


def _finite_or_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


class RunWriter:
    """A scalar written again for the same (step, key) replaces the old row (and gets a new id, so
    incremental readers see the new value)."""

    def __init__(self, run_dir: Path, name: str, background_checkpoints: bool = False):
        """`background_checkpoints`: a trainer's writer; WAL checkpoints run on a thread of their
        own, never inside a commit on the training thread (core/store/checkpoint.py)."""
        self.dir, self.name = run_dir, name
        self.con = connect(run_dir / "metrics.db")
        self._checkpointer = None
        if background_checkpoints:
            self.con.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpointer = Checkpointer(run_dir / "metrics.db", owner=self)
        self._thinner = units.Thinner(self.con)  # keeps blob tables small (core/store/units.py)
        self._last: dict[str, int] = {}  # per scalar key: the highest step written (see _scalars)
        self._levels: dict[str, int] = {}  # per scalar key: its lowest pyramid level, once known
        self._open_blocks = blocks.OpenBlocks()  # rows that move no block's extreme are only counted
        self._edges_cache: dict[tuple, str] = {}

    def log_scalars(self, step: int, values: dict[str, float], epoch: float | None = None, wall_time: float | None = None):
        t = time.time() if wall_time is None else wall_time
        with self.con:
            self._scalars(step, values, epoch, t)
            self._beat(t)

    def log_histogram(self, step: int, key: str, edges, counts, epoch: float | None = None):
        with self.con:
            self._histogram(step, key, edges, counts, epoch, time.time())

    def log_unit_activity(self, step: int, key: str, values, epoch: float | None = None):
        with self.con:
            self._units(step, key, values, epoch, time.time())

    def log_flush(self, step: int, scalars: dict[str, float], histograms=(), units=(), epoch: float | None = None):
        """A watcher's flush in one transaction: scalars, (key, edges, counts) histograms and
        (key, values) per-unit rows (one commit, where a call each made 1 + 3 per layer)."""
        t = time.time()
        with self.con:
            self._scalars(step, scalars, epoch, t)
            for key, edges, counts in histograms:
                self._histogram(step, key, edges, counts, epoch, t)
            for key, values in units:
                self._units(step, key, values, epoch, t)
            self._beat(t)

    def _scalars(self, step: int, values: dict[str, float], epoch: float | None, t: float):
        step = int(step)
        rows = [(self.name, step, epoch, k, _finite_or_none(v), t) for k, v in values.items()]
        # Rows that replace an existing (key, step) are found first: their old value may be a
        # block's extreme in the pyramid, which then has to be recomputed (core/store/blocks.py).
        # Only a step at or below what this writer last wrote for the key can be one.
        maybe = [k for k in values if step <= self._last_step(k)]
        rewritten = blocks.existing(self.con, [(k, step) for k in maybe]) if maybe else []
        for k in maybe:  # a step before the key's first rows (a resumed run) can narrow its first gap
            self._levels.pop(k, None)
        self.con.executemany(
            "INSERT OR REPLACE INTO scalars(run, step, epoch, key, value, wall_time) VALUES (?,?,?,?,?,?)", rows)
        blocks.add_rows(self.con, [(r[3], r[1], r[4]) for r in rows], rewritten, self._levels, self._open_blocks)
        for k in values:
            self._last[k] = max(step, self._last[k])
            if k.startswith(units.THINNED_SCALARS) and self._thinner.added("scalars", k):
                self._levels.pop(k, None)  # thinning can widen the gap behind the key's lowest level

    def _last_step(self, key: str) -> int:
        got = self._last.get(key)
        if got is None:  # first write of the key in this process: what a resumed run already has
            got = self.con.execute("SELECT MAX(step) FROM scalars WHERE key = ?", (key,)).fetchone()[0]
            got = self._last[key] = -1 if got is None else int(got)
        return got

    def _histogram(self, step: int, key: str, edges, counts, epoch: float | None, t: float):
        self.con.execute(
            "INSERT INTO histograms(run, step, epoch, key, edges, counts, wall_time) VALUES (?,?,?,?,?,?,?)",
            (self.name, int(step), epoch, key, self._edges_json(edges),
             json.dumps(np.asarray(counts, float).tolist()), t))
        self._thinner.added("histograms", key)

    def _edges_json(self, edges) -> str:
        """A watcher's histograms share one set of edges, flush after flush: encoded once."""
        key = tuple(edges) if isinstance(edges, (tuple, list)) else None
        got = self._edges_cache.get(key) if key is not None else None
        if got is None:
            got = json.dumps(np.asarray(edges, float).tolist())
            if key is not None and len(self._edges_cache) < 16:
                self._edges_cache[key] = got
        return got

    def _units(self, step: int, key: str, values, epoch: float | None, t: float):
        self.con.execute(
            "INSERT INTO unit_activity(run, step, epoch, key, values_json, wall_time) VALUES (?,?,?,?,?,?)",
            (self.name, int(step), epoch, key, units.encode(values), t))
        self._thinner.added("unit_activity", key)

    def heartbeat(self):
        with self.con:
            self._beat(time.time())

    def pending_commands(self) -> list[dict]:
        """Commands not yet applied, oldest first (read once per flush, never per step)."""
        return commands.pending(self.con)

    def log_event(self, step: int, kind: str, layer: str | None = None, units: int | None = None,
                  reason: str | None = None, command_id: str | None = None, details: dict | None = None,
                  command_state: str | None = None):
        """An event row; with `command_id` and `command_state`, the command is closed in the same
        transaction, so a crash never leaves a command applied twice or an event without its command."""
        commands.write_event(self.con, self.name, step, kind, layer, units, reason, command_id, details, command_state)

    def _beat(self, t: float):
        self.con.execute("UPDATE status SET heartbeat = ? WHERE id = 1", (t,))

    def set_status(self, state: str, reason: str | None = None):
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self.con:
            self.con.execute("UPDATE status SET state = ?, reason = ?, heartbeat = ?, pid = ? WHERE id = 1",
                             (state, reason, time.time(), os.getpid()))

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits out another connection's lock before it fails."""
        self.con.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def close(self):
        try:
            with self.con:  # the pyramid's pending row counts (blocks.OpenBlocks)
                blocks.write_pending(self.con, self._open_blocks)
        except STORE_ERRORS:
            pass  # a failing store: the counts lag, and no query reads them
        finally:
            if self._checkpointer is not None:
                self._checkpointer.close()
            self.con.close()  # the last connection to close checkpoints what is left

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
