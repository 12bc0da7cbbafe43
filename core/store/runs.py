"""Run store: a directory per run holding run.json (config) and metrics.db (SQLite, WAL mode).

One writer (the trainer process) and any number of readers (dashboard, CLI). WAL lets readers
poll while the writer commits, and a reader only ever sees whole transactions, so a killed trainer
leaves every committed row readable. Readers fetch incrementally: rows after the last id they saw.

Scalar schema everywhere: (run, step, epoch, key, value, wall_time).
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

import numpy as np

from .. import paths
from ..errors import UserError
from . import series
from ..argtypes import (existing_run_name, lookup_name_problem, non_negative_float, run_name_problem,
                           unit_interval)

if TYPE_CHECKING:
    import pandas as pd

# A running trainer beats at every log interval; silence this long means it is gone.
STALE_AFTER_S = 120.0
SCALAR_COLUMNS = ["run", "step", "epoch", "key", "value", "wall_time"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scalars (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL,
    key TEXT NOT NULL, value REAL, wall_time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS scalars_key ON scalars(key, step);
CREATE TABLE IF NOT EXISTS histograms (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL,
    key TEXT NOT NULL, edges TEXT NOT NULL, counts TEXT NOT NULL, wall_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS unit_activity (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL,
    key TEXT NOT NULL, values_json TEXT NOT NULL, wall_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS status (
    id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL, reason TEXT,
    pid INTEGER, heartbeat REAL NOT NULL, started REAL NOT NULL);
"""

# The control path (ARCHITECTURE.md, "Acting on a run"): the dashboard or the CLI writes a command
# row; the trainer's watcher reads pending ones at its next flush, applies them between optimizer
# steps, and writes an event row for what it did (or why it could not). Ids make a command
# idempotent: the same id sent twice (a double click, a page rerun) is one command.
_CONTROL_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, args TEXT NOT NULL, created REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', result TEXT, applied_step INTEGER, updated REAL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, step INTEGER NOT NULL, kind TEXT NOT NULL, layer TEXT,
    units INTEGER, reason TEXT, command_id TEXT, details TEXT, wall_time REAL NOT NULL);
"""
_SCHEMA += _CONTROL_SCHEMA
COMMAND_KINDS = ("recycle",)

# The min/max pyramid the monitor reads at chart resolution (core/series.py owns it).
_SCHEMA += series.SCHEMA

STATES = ("running", "finished", "stopped", "failed")

# One value per (run, step, key). Kept out of _SCHEMA: a store written before it existed may hold
# duplicates (a resume used to append), which must go before the index can be built.
_ONE_VALUE_INDEX = "scalars_one_value"
_TAIL_TABLES = ("scalars", "histograms", "unit_activity")


def _ensure_one_value(con: sqlite3.Connection) -> None:
    """Build the unique index, first dropping older duplicates (the last one written stays, as a
    resumed trainer's value would have won). A no-op once the index exists."""
    if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (_ONE_VALUE_INDEX,)).fetchone():
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("DELETE FROM scalars WHERE id NOT IN (SELECT MAX(id) FROM scalars GROUP BY run, key, step)")
        con.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {_ONE_VALUE_INDEX} ON scalars(run, key, step)")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


_MIGRATED: set[Path] = set()


def _migrate_for_readers(db: Path) -> None:
    """Readers open read-only; a store from before the unique index gets it once, from a short
    read-write connection. If that cannot be done (read-only disk), reading goes on as before."""
    key = db.resolve()
    if key in _MIGRATED:
        return
    try:
        con = _connect(db)
        try:
            _ensure_one_value(con)
        finally:
            con.close()
    except sqlite3.Error:
        return
    _MIGRATED.add(key)


def validate_run_name(name: str) -> str:
    """A new run's name: at most 100 characters of letters, digits and . _ + - (core.argtypes)."""
    problem = run_name_problem(name)
    if problem:
        raise UserError(f"invalid run name {str(name)[:40]!r}: {problem}")
    return name


def check_lookup_name(name: str) -> str:
    """An existing run's name: looser (older runs stay readable) but never a path out of the store."""
    problem = lookup_name_problem(name)
    if problem:
        raise UserError(f"invalid run name {str(name)[:40]!r}: {problem}")
    return name


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    else:
        # timeout = SQLite's busy_timeout: a writer waits out another's commit instead of failing
        # with "database is locked".
        con = sqlite3.connect(path, timeout=30, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed row survives a killed process (not a power cut).
        con.execute("PRAGMA synchronous=NORMAL")
    return con


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


class RunWriter:
    """Used by the one trainer process of a run. Every call is one transaction. A scalar written
    again for the same (step, key) replaces the old row (and gets a new id, so incremental readers
    see the new value)."""

    def __init__(self, run_dir: Path, name: str):
        self.dir, self.name = run_dir, name
        self.con = _connect(run_dir / "metrics.db")

    def log_scalars(self, step: int, values: dict[str, float], epoch: float | None = None, wall_time: float | None = None):
        t = time.time() if wall_time is None else wall_time
        rows = [(self.name, int(step), epoch, k, _finite_or_none(v), t) for k, v in values.items()]
        with self.con:
            # Rows that replace an existing (key, step) are found first: their old value may be a
            # block's extreme in the pyramid, which then has to be recomputed (core/series.py).
            rewritten = series.existing(self.con, [(r[3], r[1]) for r in rows])
            self.con.executemany(
                "INSERT OR REPLACE INTO scalars(run, step, epoch, key, value, wall_time) VALUES (?,?,?,?,?,?)", rows)
            series.add_rows(self.con, [(r[3], r[1], r[4]) for r in rows], rewritten)
            self._beat(t)

    def log_histogram(self, step: int, key: str, edges, counts, epoch: float | None = None):
        t = time.time()
        with self.con:
            self.con.execute(
                "INSERT INTO histograms(run, step, epoch, key, edges, counts, wall_time) VALUES (?,?,?,?,?,?,?)",
                (self.name, int(step), epoch, key, json.dumps(np.asarray(edges, float).tolist()),
                 json.dumps(np.asarray(counts, float).tolist()), t))

    def log_unit_activity(self, step: int, key: str, values, epoch: float | None = None):
        t = time.time()
        with self.con:
            self.con.execute(
                "INSERT INTO unit_activity(run, step, epoch, key, values_json, wall_time) VALUES (?,?,?,?,?,?)",
                (self.name, int(step), epoch, key, json.dumps(np.round(np.asarray(values, float), 4).tolist()), t))

    def heartbeat(self):
        with self.con:
            self._beat(time.time())

    def pending_commands(self) -> list[dict]:
        """Commands not yet applied, oldest first (read once per flush, never per step)."""
        rows = self.con.execute("SELECT id, kind, args, created FROM commands WHERE state = 'pending' "
                                "ORDER BY created, id").fetchall()
        return [{"id": i, "kind": k, "args": json.loads(a), "created": c} for i, k, a, c in rows]

    def log_event(self, step: int, kind: str, layer: str | None = None, units: int | None = None,
                  reason: str | None = None, command_id: str | None = None, details: dict | None = None,
                  command_state: str | None = None):
        """An event row; with `command_id` and `command_state`, the command is closed in the same
        transaction, so a crash never leaves a command applied twice or an event without its command."""
        t = time.time()
        with self.con:
            self.con.execute(
                "INSERT INTO events(run, step, kind, layer, units, reason, command_id, details, wall_time) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (self.name, int(step), kind, layer, units, reason, command_id,
                 json.dumps(details or {}, default=str), t))
            if command_id is not None and command_state is not None:
                self.con.execute("UPDATE commands SET state = ?, result = ?, applied_step = ?, updated = ? WHERE id = ?",
                                 (command_state, reason, int(step), t, command_id))

    def _beat(self, t: float):
        self.con.execute("UPDATE status SET heartbeat = ? WHERE id = 1", (t,))

    def set_status(self, state: str, reason: str | None = None):
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self.con:
            self.con.execute("UPDATE status SET state = ?, reason = ?, heartbeat = ?, pid = ? WHERE id = 1",
                             (state, reason, time.time(), os.getpid()))

    def close(self):
        self.con.close()


def _finite_or_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class RunStatus:
    state: str  # running | finished | stopped | failed | stale
    reason: str | None
    heartbeat_age_s: float
    pid: int | None
    started: float | None = None  # when the current trainer process took the run over; a resume changes it


class RunReader:
    def __init__(self, run_dir: Path, name: str):
        self.dir, self.name = run_dir, name
        self._con: sqlite3.Connection | None = None

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = _connect(self.dir / "metrics.db", readonly=True)
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
        if not self._has_table("events"):
            return []
        rows = self.con.execute("SELECT id, step, kind, layer, units, reason, command_id, details, wall_time "
                                "FROM events WHERE id > ? ORDER BY id", (after_id,)).fetchall()
        return [{"id": i, "run": self.name, "step": s, "kind": k, "layer": l, "units": u, "reason": r,
                 "command_id": c, "details": json.loads(d or "{}"), "wall_time": w}
                for i, s, k, l, u, r, c, d, w in rows]

    def commands(self) -> list[dict]:
        if not self._has_table("commands"):
            return []
        rows = self.con.execute("SELECT id, kind, args, created, state, result, applied_step FROM commands "
                                "ORDER BY created, id").fetchall()
        return [{"id": i, "kind": k, "args": json.loads(a), "created": c, "state": s, "result": r, "applied_step": st}
                for i, k, a, c, s, r, st in rows]

    def _has_table(self, name: str) -> bool:
        # A store written before the control path existed has neither table (and a reader is read-only).
        return self.con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def unit_activity(self, key: str | None = None, after_id: int = 0) -> list[dict]:
        q, args = "SELECT id, step, epoch, key, values_json FROM unit_activity WHERE id > ?", [after_id]
        if key:
            q, args = q + " AND key = ?", args + [key]
        return [{"id": i, "step": s, "epoch": e, "key": k, "values": json.loads(v)}
                for i, s, e, k, v in self.con.execute(q + " ORDER BY id", args)]


def _same_host(meta: dict) -> bool:
    return meta.get("host") == os.uname().nodename


class RunStore:
    """A folder of runs. Names are validated before they touch the file system."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else paths.runs_dir()

    def path(self, name: str) -> Path:
        return self.root / check_lookup_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / "metrics.db").exists()

    def create(self, name: str, config: dict, kind: str = "", resume: bool = False,
               layers: dict | None = None, resume_step: int | None = None) -> RunWriter:
        """`resume_step`: the step of the checkpoint a resumed trainer starts from. What the crashed
        process wrote after it is superseded (deleted, in the same transaction that marks the run
        running again), so the resumed trainer's rows are the only ones for those steps."""
        run_dir = self.path(name) if resume else self.root / validate_run_name(name)
        # A folder without metrics.db (e.g. the launcher's train.log arrived first) is not a run yet.
        if (run_dir / "metrics.db").exists() and not resume:
            raise UserError(f"run {name!r} already exists in {self.root}; pick another --name or --resume it")
        run_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        # layers: probed layer -> {"activation", "params"}, so readers draw the f' each layer really uses.
        meta = {"name": name, "kind": kind, "config": config, "created": now, "host": os.uname().nodename,
                "layers": layers or {}}
        if resume and (run_dir / "run.json").exists():
            meta["created"] = json.loads((run_dir / "run.json").read_text()).get("created", now)
        tmp = run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=str))
        tmp.replace(run_dir / "run.json")
        db = run_dir / "metrics.db"
        if not db.exists():
            # Build the schema under a temporary name and rename it into place, so a reader that
            # polls for metrics.db never opens a database without its tables.
            tmp_db = run_dir / f".metrics.db.{os.getpid()}.tmp"
            con = _connect(tmp_db)
            con.executescript(_SCHEMA)
            _ensure_one_value(con)
            con.execute("INSERT INTO status(id, state, reason, pid, heartbeat, started) VALUES (1, 'running', NULL, ?, ?, ?)",
                        (os.getpid(), now, now))
            con.commit()
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
            tmp_db.replace(db)
        writer = RunWriter(run_dir, name)
        con = writer.con
        con.executescript(_SCHEMA)
        _ensure_one_value(con)
        con.execute("BEGIN IMMEDIATE")
        try:
            if resume_step is not None:
                for table in _TAIL_TABLES:
                    con.execute(f"DELETE FROM {table} WHERE step > ?", (int(resume_step),))
                series.trim_after(con, int(resume_step))
            con.execute(
                "INSERT OR REPLACE INTO status(id, state, reason, pid, heartbeat, started) VALUES (1, 'running', NULL, ?, ?, ?)",
                (os.getpid(), now, now))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        series.ensure_blocks(con)  # a resumed run from before the pyramid: build it once
        return writer

    def open(self, name: str) -> RunReader:
        if not self.exists(name):
            raise UserError(f"no run {name!r} in {self.root}")
        _migrate_for_readers(self.path(name) / "metrics.db")
        return RunReader(self.path(name), name)

    def send_command(self, name: str, kind: str, args: dict, command_id: str | None = None) -> dict:
        """Queue a command for a running run. Refused (UserError) for a run that is not running (finished,
        failed, stopped, or stale: its trainer is gone), for an unknown kind, and for a layer the run
        does not have. The same `command_id` again returns the first command, unchanged."""
        import uuid

        if kind not in COMMAND_KINDS:
            raise UserError(f"unknown command {kind!r}; expected one of {', '.join(COMMAND_KINDS)}")
        r = self.open(name)
        try:
            st, meta = r.status(), r.meta
        finally:
            r.close()
        cid = command_id or uuid.uuid4().hex
        if not isinstance(cid, str) or not 0 < len(cid) <= 64:
            raise UserError("a command id is a string of 1 to 64 characters")
        db = self.path(name) / "metrics.db"
        con = _connect(db)
        try:
            con.executescript(_CONTROL_SCHEMA)
            old = con.execute("SELECT id, kind, args, created, state, result, applied_step FROM commands WHERE id = ?",
                              (cid,)).fetchone()
            if old is not None:
                i, k, a, c, s, res, at = old
                return {"id": i, "kind": k, "args": json.loads(a), "created": c, "state": s, "result": res,
                        "applied_step": at, "duplicate": True}
            if st.state != "running":
                why = f" ({st.reason})" if st.reason else ""
                raise UserError(f"run {name!r} is {st.state}{why}: commands go to a running run")
            layer = args.get("layer")
            layers = meta.get("layers", {})
            if kind == "recycle":
                if layer not in layers:
                    raise UserError(f"run {name!r} has no layer {layer!r}; its layers: {', '.join(layers) or 'none'}")
                why = layers[layer].get("recycle")
                if isinstance(why, str) and why.startswith("cannot"):
                    raise UserError(f"{layer}: {why}")
            now = time.time()
            with con:
                con.execute("INSERT INTO commands(id, kind, args, created, state) VALUES (?,?,?,?, 'pending')",
                            (cid, kind, json.dumps(args), now))
            return {"id": cid, "kind": kind, "args": args, "created": now, "state": "pending", "result": None,
                    "applied_step": None, "duplicate": False}
        finally:
            con.close()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        runs = [p for p in self.root.iterdir() if (p / "metrics.db").exists() and (p / "run.json").exists()]
        return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]

    def summary(self, name: str) -> dict:
        r = self.open(name)
        try:
            meta, st = r.meta, r.status()
            return {"name": name, "kind": meta.get("kind", ""), "created": meta.get("created"),
                    "status": st.state, "reason": st.reason, "heartbeat_age_s": round(st.heartbeat_age_s, 1),
                    "config": meta.get("config", {}), "last": r.last()}
        finally:
            r.close()


def add_cli(sub) -> None:
    p = sub.add_parser("runs", help="list and show runs in the store")
    s = p.add_subparsers(dest="action", required=True)
    lp = s.add_parser("list")
    lp.add_argument("--runs-dir", default=str(paths.runs_dir()))
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_cli_list)
    sp = s.add_parser("show")
    sp.add_argument("run", type=existing_run_name)
    sp.add_argument("--runs-dir", default=str(paths.runs_dir()))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cli_show)
    rp = s.add_parser("recycle", help="recycle a running run's dead or tau-dormant units at its next flush")
    rp.add_argument("run", type=existing_run_name)
    rp.add_argument("--layer", required=True, help="a hooked layer (python -m core runs show RUN --json: config.watch)")
    how = rp.add_mutually_exclusive_group()
    how.add_argument("--tau", type=unit_interval, default=None, help="recycle units with tau-score <= TAU (default: the run's tau)")
    how.add_argument("--dead", action="store_true", help="recycle the units dead over the window instead")
    rp.add_argument("--id", default=None, help="command id (the same id twice is one command)")
    rp.add_argument("--wait", type=non_negative_float, default=0.0, metavar="S",
                    help="wait up to S seconds for the trainer to apply it")
    rp.add_argument("--runs-dir", default=str(paths.runs_dir()))
    rp.set_defaults(func=_cli_recycle)
    ep = s.add_parser("events", help="what the control path did to a run (recycles, refusals)")
    ep.add_argument("run", type=existing_run_name)
    ep.add_argument("--runs-dir", default=str(paths.runs_dir()))
    ep.add_argument("--json", action="store_true")
    ep.set_defaults(func=_cli_events)


def _cli_list(args) -> int:
    store = RunStore(args.runs_dir)
    rows = []
    for n in store.names():
        s = store.summary(n)
        rows.append({k: s[k] for k in ("name", "kind", "status", "reason", "created")})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<32} {r['kind']:<10} {r['status']:<9} {r['reason'] or ''}")
    return 0


def _cli_show(args) -> int:
    s = RunStore(args.runs_dir).summary(args.run)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
    else:
        print(f"{s['name']}: {s['status']}" + (f" ({s['reason']})" if s["reason"] else ""))
        for k, v in s["last"].items():
            print(f"  {k:<32} {v}")
    return 0


def _cli_recycle(args) -> int:
    store = RunStore(args.runs_dir)
    cmd_args = {"layer": args.layer, **({"dead": True} if args.dead else {}),
                **({"tau": args.tau} if args.tau is not None else {})}
    cmd = store.send_command(args.run, "recycle", cmd_args, command_id=args.id)
    every = store.open(args.run).config.get("log_every", "?")
    print(f"command {cmd['id']} {'already queued' if cmd['duplicate'] else 'queued'}: recycle {args.layer} "
          f"({'dead units' if args.dead else 'tau-dormant units'}); the trainer applies it at its next flush "
          f"(every {every} steps)")
    deadline = time.time() + args.wait
    while args.wait and time.time() < deadline:
        r = store.open(args.run)
        try:
            done = next((c for c in r.commands() if c["id"] == cmd["id"] and c["state"] != "pending"), None)
        finally:
            r.close()
        if done:
            print(f"{done['state']} at step {done['applied_step']}: {done['result']}")
            return 0 if done["state"] == "applied" else 1
        time.sleep(0.2)
    return 0


def _cli_events(args) -> int:
    r = RunStore(args.runs_dir).open(args.run)
    try:
        events = r.events()
    finally:
        r.close()
    if args.json:
        print(json.dumps(events, indent=2, default=str))
    else:
        for e in events:
            print(f"step {e['step']:>7}  {e['kind']:<8} {e['layer'] or '-':<28} {e['reason']}")
        if not events:
            print(f"{args.run}: no events")
    return 0


class RunFollower:
    """What a live view has seen of one run. `poll()` reads only rows after the last ids seen
    (scalars, histograms, unit activity), so a refresh costs the new rows, not the whole run."""

    MAX_BLOBS = 2000  # histogram / activity rows kept per follower; older ones are dropped first

    def __init__(self, store: RunStore, name: str):
        self.store, self.name = store, name
        self.scalar_cursor = self.hist_cursor = self.unit_cursor = 0
        import pandas as pd

        self.scalars = pd.DataFrame(columns=SCALAR_COLUMNS)
        self.histograms: list[dict] = []
        self.units: list[dict] = []
        self.status: RunStatus | None = None
        self.config: dict = {}
        self.layers: dict = {}

    def _reset(self):
        import pandas as pd

        self.scalar_cursor = self.hist_cursor = self.unit_cursor = 0
        self.scalars = pd.DataFrame(columns=SCALAR_COLUMNS)
        self.histograms, self.units = [], []

    def poll(self) -> int:
        reader = self.store.open(self.name)
        try:
            status = reader.status()
            if self.status is not None and status.started != self.status.started:
                # A resume superseded rows after its checkpoint (and SQLite may reuse their ids):
                # start over rather than keep rows the store no longer has.
                self._reset()
            new, self.scalar_cursor = reader.scalars(after_id=self.scalar_cursor)
            hists = reader.histograms(after_id=self.hist_cursor)
            units = reader.unit_activity(after_id=self.unit_cursor)
            self.status, self.config = status, reader.config
            self.layers = reader.meta.get("layers", {})
        finally:
            reader.close()
        if len(new):
            import pandas as pd

            if not self.scalars.empty:
                # A rewritten (step, key) arrives as a new row: drop the old one. Only the tail can
                # clash, so only the tail is checked.
                tail = self.scalars["step"] >= new["step"].min()
                if tail.any():
                    fresh = pd.MultiIndex.from_frame(new[["step", "key"]])
                    old = pd.MultiIndex.from_frame(self.scalars.loc[tail, ["step", "key"]])
                    drop = self.scalars.index[tail][old.isin(fresh)]
                    if len(drop):
                        self.scalars = self.scalars.drop(index=drop)
            self.scalars = new if self.scalars.empty else pd.concat([self.scalars, new], ignore_index=True)
        if hists:
            self.hist_cursor = hists[-1]["id"]
            self.histograms = (self.histograms + hists)[-self.MAX_BLOBS:]
        if units:
            self.unit_cursor = units[-1]["id"]
            self.units = (self.units + units)[-self.MAX_BLOBS:]
        return len(new) + len(hists) + len(units)
