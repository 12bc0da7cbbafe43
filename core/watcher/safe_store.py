"""The run's writer behind a guard: a failing store never stops training.

A full disk (ENOSPC, SQLite's "database or disk is full"), a runs folder removed or made read-only
mid-run, or a store locked by another process for longer than `lock_timeout`: the watcher stops
writing, warns once, and training goes on. Every `retry_after` seconds (at most once per call in
between) it tries again; once a write goes through it writes a "store_failure" event that marks
the gap (from which step, why, how many writes were lost) and carries on. A run folder that was
removed is created again (resume=True), so the run continues in a fresh database.

`SafeStore` has the RunWriter's write methods (what the watcher, its plug-ins and our trainers
call); a dropped call returns what an empty store would (`pending_commands()` -> []).
"""
from __future__ import annotations

import os
import time
import warnings

from ..store.schema import STORE_ERRORS


class SafeStore:
    """`open_run(again)` creates the run (again=False, may raise UserError: a bad name, the run
    exists) or reopens it after a failure (again=True). `step()` gives the watcher's current step."""

    def __init__(self, open_run, step, lock_timeout: float = 30.0, retry_after: float = 5.0):
        self._open_run, self._step = open_run, step
        self.lock_timeout, self.retry_after = float(lock_timeout), float(retry_after)
        self.writer = None
        self.degraded: str | None = None  # why writes are being dropped, while they are
        self.dropped = 0  # writes lost in the current failure
        self.failures: list[dict] = []  # every failure of this process: from/to step, reason, dropped
        self._since: int | None = None
        self._next_try = 0.0
        self._inode: int | None = None
        self._warned = False  # one warning for the first failure and one for its recovery: a flapping disk is quiet

    # ---------------------------------------------------------------- opening
    def start(self):
        """Create the run. A store error degrades (training goes on); a UserError propagates."""
        try:
            self._adopt(self._open_run(False))
        except STORE_ERRORS as e:
            self._fail(e, "creating the run")

    def _adopt(self, writer):
        self.writer = writer
        self._set_timeout(self.lock_timeout)
        self._db_path = os.fspath(writer.dir / "metrics.db") if hasattr(writer, "dir") else None
        self._inode = self._db_inode()

    def _db_inode(self) -> int | None:
        try:
            return os.stat(self._db_path).st_ino
        except (OSError, AttributeError, TypeError):
            return None

    def _set_timeout(self, seconds: float):
        try:
            self.writer.set_busy_timeout(seconds)
        except (*STORE_ERRORS, AttributeError):
            pass

    @property
    def dir(self):
        return getattr(self.writer, "dir", None)

    @property
    def name(self):
        return getattr(self.writer, "name", None)

    # ---------------------------------------------------------------- failure and recovery
    def check(self):
        """Once per flush: a run folder removed under us (SQLite would go on writing to the unlinked
        file) counts as a failure."""
        if self.writer is None or self.degraded:
            return
        if self._db_inode() != self._inode:
            self._fail(FileNotFoundError(f"the run folder {self.writer.dir} was removed"), "writing")
            self._close_writer()

    def _fail(self, error: BaseException, doing: str):
        if self.degraded is None:
            self.degraded = f"{type(error).__name__}: {error}"[:300]
            self._since = self._step()
            self.dropped = 0
            if not self._warned:
                warnings.warn(f"actlab watch: the run store failed while {doing} ({self.degraded}); training goes on, "
                              f"the watcher stops writing and tries again every {self.retry_after:g} s",
                              RuntimeWarning, stacklevel=4)
            self._set_timeout(0.05)  # retries must not stall the loop for the full lock timeout
        self._next_try = time.monotonic() + self.retry_after

    def _close_writer(self):
        if self.writer is not None:
            try:
                self.writer.close()
            except STORE_ERRORS:
                pass
        self.writer = None

    def _usable(self) -> bool:
        """Whether to try a write now (always when healthy; when degraded, once per retry_after)."""
        if self.degraded is None:
            return True
        if time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + self.retry_after
        if self.writer is None or self._db_inode() != self._inode:
            self._close_writer()
            try:
                self._adopt(self._open_run(True))
                self._set_timeout(0.05)
            except Exception as e:  # noqa: BLE001 -- any failure to reopen leaves the store degraded
                self._close_writer()
                self.degraded = self.degraded or f"{type(e).__name__}: {e}"
                return False
        return True

    def _recovered(self):
        gap = {"from_step": self._since, "to_step": self._step(), "reason": self.degraded, "dropped": self.dropped}
        self.failures.append(gap)
        self.degraded = None
        self._set_timeout(self.lock_timeout)
        if not self._warned:
            self._warned = True
            warnings.warn(f"actlab watch: the run store works again at step {gap['to_step']}; {self.dropped} "
                          f"write(s) since step {self._since} were lost (later failures: events only)",
                          RuntimeWarning, stacklevel=4)
        self._call("log_event", gap["to_step"], "store_failure", None, None,
                   f"the run store failed from step {gap['from_step']} ({gap['reason']}); {gap['dropped']} "
                   f"write(s) lost; writing again from step {gap['to_step']}", None, gap)

    def _call(self, method: str, *args, default=None, **kwargs):
        if self.writer is None and self.degraded is None:
            return default  # never opened (a rank other than 0 has no SafeStore at all)
        if not self._usable():
            self.dropped += 1
            return default
        was_degraded = self.degraded is not None
        try:
            out = getattr(self.writer, method)(*args, **kwargs)
        except STORE_ERRORS as e:
            self._fail(e, f"{method.replace('_', ' ')}")
            self.dropped += 1
            return default
        if was_degraded:
            self._recovered()
        return out

    # ---------------------------------------------------------------- the RunWriter's face
    def log_scalars(self, *args, **kwargs):
        return self._call("log_scalars", *args, **kwargs)

    def log_flush(self, *args, **kwargs):
        return self._call("log_flush", *args, **kwargs)

    def log_histogram(self, *args, **kwargs):
        return self._call("log_histogram", *args, **kwargs)

    def log_unit_activity(self, *args, **kwargs):
        return self._call("log_unit_activity", *args, **kwargs)

    def log_event(self, *args, **kwargs):
        return self._call("log_event", *args, **kwargs)

    def heartbeat(self):
        return self._call("heartbeat")

    def pending_commands(self) -> list[dict]:
        # A read proves nothing about writing, and a command applied now could not write its event:
        # commands wait while the store fails.
        if self.degraded is not None:
            return []
        return self._call("pending_commands", default=[])

    def set_status(self, state: str, reason: str | None = None):
        self._next_try = 0.0  # the run's end is worth one more try whatever the schedule
        self._call("set_status", state, reason)
        if self.degraded is not None:
            warnings.warn(f"actlab watch: the run store could not write the final status ({state}): {self.degraded}",
                          RuntimeWarning, stacklevel=3)

    def close(self):
        self._close_writer()


__all__ = ["STORE_ERRORS", "SafeStore"]
