"""RunReader: a read-only view of one run (status, scalars, histograms, unit activity, events).

Use it as a context manager, so the connection is closed however the block ends:

    with store.open(name) as r:
        status, last = r.status(), r.last()

Readers fetch incrementally: rows after the last id they saw.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import commands, series, units
from .schema import SCALAR_COLUMNS, STALE_AFTER_S, connect

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RunStatus:
    state: str  # running | finished | stopped | failed | stale
    reason: str | None
    heartbeat_age_s: float
    pid: int | None
    started: float | None = None  # when the current trainer process took the run over; a resume changes it


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _same_host(meta: dict) -> bool:
    return meta.get("host") == os.uname().nodename


class RunReader:
    def __init__(self, run_dir: Path, name: str):
        self.dir, self.name = run_dir, name
        self._con: sqlite3.Connection | None = None

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = connect(self.dir / "metrics.db", readonly=True)
        return self._con

    def close(self):
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def meta(self) -> dict:
        return json.loads((self.dir / "run.json").read_text())

    @property
    def config(self) -> dict:
        return self.meta.get("config", {})

    def status(self, stale_after_s: float = STALE_AFTER_S) -> RunStatus:
        row = self.con.execute("SELECT state, reason, pid, heartbeat, started FROM status WHERE id = 1").fetchone()
        if row is None:
            return RunStatus("stale", "no status row", math.inf, None)
        state, reason, pid, beat, started = row
        age = time.time() - beat
        if state == "running":
            if not _pid_alive(pid) and _same_host(self.meta):
                return RunStatus("stale", f"trainer process {pid} is gone (crashed or killed)", age, pid, started)
            if age > stale_after_s:
                return RunStatus("stale", f"no heartbeat for {age:.0f}s", age, pid, started)
        return RunStatus(state, reason, age, pid, started)

    def scalars(self, after_id: int = 0, keys: list[str] | None = None) -> tuple[pd.DataFrame, int]:
        """Rows with id > after_id, and the new cursor. Pass the cursor back next time."""
        q = "SELECT id, run, step, epoch, key, value, wall_time FROM scalars WHERE id > ?"
        args: list = [after_id]
        if keys:
            q += f" AND key IN ({','.join('?' * len(keys))})"
            args += keys
        import pandas as pd  # here, not at the top: a trainer only writes, and pandas costs ~0.2 s to import

        df = pd.read_sql_query(q + " ORDER BY id", self.con, params=args)
        cursor = int(df["id"].max()) if len(df) else after_id
        df["value"] = df["value"].astype(float)
        return df[SCALAR_COLUMNS], cursor

    def keys(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT DISTINCT key FROM scalars ORDER BY key")]

    def last(self) -> dict[str, float | None]:
        rows = self.con.execute(
            "SELECT key, value FROM scalars WHERE id IN (SELECT MAX(id) FROM scalars GROUP BY key)").fetchall()
        return dict(sorted(rows))

    def key_rows(self, key: str) -> list[tuple[int, float | None, float | None, float]]:
        """(step, epoch, value, wall_time) of one key at full resolution, in step order."""
        return self.con.execute("SELECT step, epoch, value, wall_time FROM scalars WHERE key = ? ORDER BY step",
                                (key,)).fetchall()

    def max_step(self) -> int | None:
        return self.con.execute("SELECT MAX(step) FROM scalars").fetchone()[0]

    def histograms(self, key: str | None = None, after_id: int = 0) -> list[dict]:
        q, args = "SELECT id, step, epoch, key, edges, counts FROM histograms WHERE id > ?", [after_id]
        if key:
            q, args = q + " AND key = ?", args + [key]
        return [{"id": i, "step": s, "epoch": e, "key": k, "edges": json.loads(ed), "counts": json.loads(c)}
                for i, s, e, k, ed, c in self.con.execute(q + " ORDER BY id", args)]

    def tail(self, n: int = 8, prefixes: tuple[str, ...] = ("dead/", "dormant/", "grad_norm/", "loss/")):
        """The last n rows of each key with one of these prefixes, at full resolution (the alert rules
        look at the last few flushes; a chart's downsampled frame may have merged them)."""
        import pandas as pd

        keys = [k for k in series.keys(self.con) if k.startswith(prefixes)]
        parts = [self.con.execute("SELECT run, step, epoch, key, value, wall_time FROM scalars WHERE key = ? "
                                  "ORDER BY step DESC LIMIT ?", (k, int(n))).fetchall() for k in keys]
        df = pd.DataFrame([r for p in parts for r in p], columns=SCALAR_COLUMNS)
        df["value"] = df["value"].astype(float)
        return df.sort_values(["key", "step"], ignore_index=True)

    def events(self, after_id: int = 0) -> list[dict]:
        """Recycles and refusals, as the watcher recorded them (drawn as markers on every chart)."""
        return commands.events(self.con, self.name, after_id)

    def commands(self) -> list[dict]:
        return commands.all_commands(self.con)

    def unit_activity(self, key: str | None = None, after_id: int = 0) -> list[dict]:
        q, args = "SELECT id, step, epoch, key, values_json FROM unit_activity WHERE id > ?", [after_id]
        if key:
            q, args = q + " AND key = ?", args + [key]
        return [{"id": i, "step": s, "epoch": e, "key": k, "values": units.decode(v)}
                for i, s, e, k, v in self.con.execute(q + " ORDER BY id", args)]
