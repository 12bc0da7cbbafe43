"""The run database's tables, its connections and its one-time migrations.

One writer (the trainer process) and any number of readers (dashboard, CLI). WAL lets readers
poll while the writer commits, and a reader only ever sees whole transactions, so a killed trainer
leaves every committed row readable.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from . import blocks

# A running trainer beats at every log interval; silence this long means it is gone.
STALE_AFTER_S = 120.0
SCALAR_COLUMNS = ["run", "step", "epoch", "key", "value", "wall_time"]
STATES = ("running", "finished", "stopped", "failed")
# What a failing store raises (a full disk, a removed or read-only folder, a lock held too long).
STORE_ERRORS = (sqlite3.Error, OSError)

SCHEMA = """
CREATE TABLE IF NOT EXISTS scalars (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL,
    key TEXT NOT NULL, value REAL, wall_time REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS scalars_key ON scalars(key, step);
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

# The control path (ARCHITECTURE.md, "Acting on a run"; core/store/commands.py): the dashboard or
# the CLI writes a command row; the trainer's watcher reads pending ones at its next flush, applies
# them between optimizer steps, and writes an event row for what it did (or why it could not).
CONTROL_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, args TEXT NOT NULL, created REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', result TEXT, applied_step INTEGER, updated REAL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, step INTEGER NOT NULL, kind TEXT NOT NULL, layer TEXT,
    units INTEGER, reason TEXT, command_id TEXT, details TEXT, wall_time REAL NOT NULL);
"""
SCHEMA += CONTROL_SCHEMA
# The min/max pyramid the monitor reads at chart resolution (core/store/blocks.py owns it).
SCHEMA += blocks.SCHEMA

# One value per (key, step): a database holds one run, and `scalars_key`, the index every reader
# seeks on, is unique. Stores written before 2026-12 have it non-unique, with this unique index on
# (run, key, step) beside it, which `ensure_one_value` builds where it is missing: a store from before
# either may hold duplicates (a resume used to append), which must go first.
ONE_VALUE_INDEX = "scalars_one_value"
# The tables a resume trims back to its checkpoint's step.
TAIL_TABLES = ("scalars", "histograms", "unit_activity")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
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


def has_one_value(con: sqlite3.Connection) -> bool:
    """Whether the scalars have a unique index: `scalars_key` (stores since 2026-12) or the older one."""
    return any(unique and name in ("scalars_key", ONE_VALUE_INDEX)
               for _, name, unique, *_ in con.execute("PRAGMA index_list(scalars)"))


def ensure_one_value(con: sqlite3.Connection) -> None:
    """Build the unique index of an older store, first dropping its duplicates (the last one
    written stays, as a resumed trainer's value would have won). A no-op once one exists."""
    if has_one_value(con):
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("DELETE FROM scalars WHERE id NOT IN (SELECT MAX(id) FROM scalars GROUP BY run, key, step)")
        con.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {ONE_VALUE_INDEX} ON scalars(run, key, step)")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


_MIGRATED: set[Path] = set()


def migrate_for_readers(db: Path) -> None:
    """Readers open read-only; a store from before the unique index gets it once, from a short
    read-write connection. If that cannot be done (read-only disk), reading goes on as before."""
    key = db.resolve()
    if key in _MIGRATED:
        return
    try:
        con = connect(db)
        try:
            ensure_one_value(con)
        finally:
            con.close()
    except sqlite3.Error:
        return
    _MIGRATED.add(key)


def has_table(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def create_database(db: Path, pid: int, now: float) -> None:
    """A new metrics.db with its tables and a "running" status row. Built under a temporary name
    and renamed into place, so a reader that polls for metrics.db never opens it without tables."""
    tmp_db = db.with_name(f".{db.name}.{pid}.tmp")
    con = connect(tmp_db)
    con.executescript(SCHEMA)
    ensure_one_value(con)
    con.execute("INSERT INTO status(id, state, reason, pid, heartbeat, started) VALUES (1, 'running', NULL, ?, ?, ?)",
                (pid, now, now))
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    tmp_db.replace(db)


def take_over(con: sqlite3.Connection, pid: int, now: float, resume_step: int | None) -> None:
    """Mark the run running under this process; on a resume, first delete what a crashed process
    wrote after `resume_step` (one transaction: the resumed trainer's rows are the only ones)."""
    con.executescript(SCHEMA)
    ensure_one_value(con)
    con.execute("BEGIN IMMEDIATE")
    try:
        if resume_step is not None:
            for table in TAIL_TABLES:
                con.execute(f"DELETE FROM {table} WHERE step > ?", (int(resume_step),))
            blocks.trim_after(con, int(resume_step))
        con.execute(
            "INSERT OR REPLACE INTO status(id, state, reason, pid, heartbeat, started) VALUES (1, 'running', NULL, ?, ?, ?)",
            (pid, now, now))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    blocks.ensure_blocks(con)  # a resumed run from before the pyramid: build it once
