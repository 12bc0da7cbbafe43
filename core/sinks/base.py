"""What every sink shares: a copy of each flush handed to a background thread, so a tracker that
blocks (a server round trip, a slow disk) never sits on the training step, and a tracker that fails
warns once and retries what it could not write at the next flush, never stopping training."""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

# What a sink keeps while its tracker fails: past this many flushes the oldest are dropped (counted).
MAX_PENDING = 1000
# How long close() waits for a tracker to take what is queued before giving up on it: the end of
# training is not held hostage by a tracker server that does not answer (mlflow's HTTP client
# retries for minutes by default).
CLOSE_TIMEOUT_S = 30.0
# A write still not back after this long: the flush that notices says so, once.
SLOW_WARN_S = 30.0


@dataclass(frozen=True)
class SinkItem:
    """One flush as a sink sees it: host values only (nothing here touches the device)."""
    step: int
    wall_time: float
    scalars: dict[str, float]
    histograms: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # key: (edges, counts)
    events: tuple[dict, ...] = ()


def event_text(e: dict) -> str:
    """An event as one line: 'step 120: recycle fc1 (12 units): dormant above 0.2'."""
    units = e.get("units")
    n = len(units) if isinstance(units, (list, tuple)) else units
    what = " ".join(str(x) for x in (e.get("kind"), e.get("layer")) if x)
    return f"step {e.get('step')}: {what}" + (f" ({n} units)" if n else "") + (f": {e['reason']}" if e.get("reason") else "")


def item_from_record(record) -> SinkItem:
    """A SinkItem from the watcher's FlushRecord (core/watcher/records.py): attribute names read
    defensively, so a sink never breaks a flush over a renamed field."""
    hists = {}
    for key, h in (getattr(record, "histograms", None) or {}).items():
        edges, counts = getattr(h, "edges", None), getattr(h, "counts", None)
        if edges is None and isinstance(h, dict):
            edges, counts = h.get("edges"), h.get("counts")
        if edges is not None and counts is not None:
            hists[key] = (np.asarray(edges, float), np.asarray(counts, float))
    events = []
    for e in getattr(record, "events", None) or ():
        events.append(dict(e) if isinstance(e, dict) else dict(vars(e)))
    return SinkItem(int(record.step), float(getattr(record, "wall_time", None) or time.time()),
                    {k: float(v) for k, v in (record.scalars or {}).items()}, hists, tuple(events))


class Sink:
    """A WatchPlugin that mirrors each flush into an experiment tracker.

    Subclasses set `name` and `package` and implement `_open(run)`, `_write(item)` and `_close()`;
    these run on the sink's own thread only."""
    name = "sink"
    package = ""  # the pip name, for the one line shown when the tracker is not installed

    close_timeout_s = CLOSE_TIMEOUT_S
    slow_warn_s = SLOW_WARN_S

    def __init__(self):
        self.enabled = True
        self.warned = False
        self.dropped = 0
        self.written = 0       # flushes the tracker took
        self.failures = 0      # write attempts that raised
        self.last_error: str | None = None
        self._q: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending: list[SinkItem] = []
        self._opened = False
        self._run = "run"
        self._busy_since: float | None = None  # when the write in progress started

    # ------------------------------------------------------------- WatchPlugin hooks
    def on_start(self, watcher) -> None:
        if getattr(watcher, "rank", 0) != 0:  # DDP: rank 0 writes, as it does the store
            self.enabled = False
            return
        self.start(getattr(watcher, "run", "run"))

    def on_step(self, watcher, step: int) -> None:
        pass

    def before_write(self, watcher, record) -> None:
        pass

    def on_flush(self, watcher, record) -> None:
        self.submit(item_from_record(record))

    def on_close(self, watcher, status: str) -> None:
        self.close(status)

    def on_log(self, watcher, step: int, values: dict, epoch) -> None:
        # w.log(): evaluation metrics and plug-ins' scores (dormancy definitions) reach the store
        # outside the flush record; the tracker gets them too.
        self.submit(SinkItem(int(step), time.time(), {k: float(v) for k, v in values.items()}))

    # ------------------------------------------------------------- used without a watcher too
    def start(self, run: str) -> None:
        self._run = run
        if not self._available():
            print(f"actlab: pip install {self.package} to use the {self.name} sink (training goes on without it)",
                  file=sys.stderr)
            self.enabled = False
            return
        self._thread = threading.Thread(target=self._loop, name=f"actlab-{self.name}-sink", daemon=True)
        self._thread.start()

    def submit(self, item: SinkItem) -> None:
        if self.enabled and self._thread is not None:
            self._q.put(item)
            busy = self._busy_since
            if busy is not None and time.monotonic() - busy > self.slow_warn_s:
                self._warn(f"its tracker has not answered for {time.monotonic() - busy:.1f} s; "
                           "flushes queue up meanwhile (training goes on)")

    def close(self, status: str = "finished") -> None:
        if self._thread is None:
            return
        self._q.put(("close", status))
        self._thread.join(self.close_timeout_s)
        if self._thread.is_alive():
            left = len(self._pending) + self._q.qsize() - 1  # less the close request itself
            print(f"actlab: the {self.name} sink was still writing {self._run} {self.close_timeout_s:g} s after "
                  f"the run ended; what it had not written ({left} flushes) is lost", file=sys.stderr)
        self._thread = None

    # ------------------------------------------------------------- the sink's thread
    def _available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.package.split("-")[0]) is not None

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if isinstance(item, tuple):
                self._drain()  # a last try at close
                if self._pending or self.dropped:
                    print(f"actlab: the {self.name} sink could not write {len(self._pending) + self.dropped} "
                          f"flush(es) of {self._run}: {self.last_error}", file=sys.stderr)
                try:
                    if self._opened:
                        self._close(item[1])
                except Exception as e:  # closing a broken tracker: nothing more to do than say so
                    self._warn(f"{type(e).__name__}: {e}")
                return
            self._pending.append(item)
            if len(self._pending) > MAX_PENDING:
                self.dropped += len(self._pending) - MAX_PENDING
                self._pending = self._pending[-MAX_PENDING:]
            self._drain()

    def _drain(self) -> None:
        """Write what is pending, oldest first; stop at the first failure and keep the rest for the
        next flush (retrying at once would just fail again while the server is down)."""
        while self._pending:
            try:
                self._busy_since = time.monotonic()
                if not self._opened:
                    self._open(self._run)
                    self._opened = True
                self._write(self._pending[0])
            except Exception as e:
                self._busy_since = None
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                self._warn(f"{self.last_error}; retrying at the next flush (training goes on)")
                return
            self._busy_since = None
            self._pending.pop(0)
            self.written += 1

    def _warn(self, msg: str) -> None:
        if not self.warned:
            self.warned = True
            print(f"actlab: the {self.name} sink failed: {msg}", file=sys.stderr)

    def _open(self, run: str) -> None:
        raise NotImplementedError

    def _write(self, item: SinkItem) -> None:
        raise NotImplementedError

    def _close(self, status: str) -> None:
        pass
