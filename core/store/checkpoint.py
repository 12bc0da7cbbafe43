"""WAL checkpoints on a thread of their own, so a training step never waits on one.

In WAL mode a commit appends its pages to metrics.db-wal, and by default the committing connection
copies them back into the database and syncs it every 1000 pages (once in about 50 flushes of the
seed MLP's watch): milliseconds of copying and a sync, far longer on a slow or network disk, on
the training thread. A trainer's writer turns that off (`wal_autocheckpoint = 0`) and a `Checkpointer` runs a
PASSIVE checkpoint every `EVERY_S` seconds from its own connection instead: it waits for no reader
or writer, and readers see every committed row either way (from the WAL until it is copied). A
failed try (a full disk, a removed folder, a lock) is skipped; the next comes `EVERY_S` later. Its
connection opens the database read-write, never creating it: a removed run folder stays removed.
"""
from __future__ import annotations

import sqlite3
import threading
import weakref
from pathlib import Path

EVERY_S = 2.0


class Checkpointer:
    """`owner`: the writer; once it is garbage (a run never closed), the thread ends too, and with it
    its connection and file handles."""

    def __init__(self, db: Path, every_s: float | None = None, owner=None):
        self.db = Path(db).resolve()
        self._owner = weakref.ref(owner) if owner is not None else (lambda: True)
        self.every_s = float(EVERY_S if every_s is None else every_s)
        self.attempts = self.done = 0  # read by tests: tries, and checkpoints that ran
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="actlab-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self):
        con = None
        try:
            while not self._stop.wait(self.every_s) and self._owner() is not None:
                self.attempts += 1
                try:
                    if con is None:
                        con = sqlite3.connect(self.db.as_uri() + "?mode=rw", uri=True, timeout=0,
                                              check_same_thread=False)
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.done += 1
                except (sqlite3.Error, OSError):
                    if con is not None:
                        con.close()
                    con = None
        finally:
            if con is not None:
                con.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
