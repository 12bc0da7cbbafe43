"""RunFollower: what a live view has seen of one run, read incrementally."""
from __future__ import annotations

from .reader import RunStatus
from .schema import SCALAR_COLUMNS


class RunFollower:
    """`poll()` reads only rows after the last ids seen (scalars, histograms, unit activity), so a
    refresh costs the new rows, not the whole run."""

    MAX_BLOBS = 2000  # histogram / activity rows kept per follower; older ones are dropped first

    def __init__(self, store, name: str):
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
        with self.store.open(self.name) as reader:
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
        if len(new):
            self._merge(new)
        if hists:
            self.hist_cursor = hists[-1]["id"]
            self.histograms = (self.histograms + hists)[-self.MAX_BLOBS:]
        if units:
            self.unit_cursor = units[-1]["id"]
            self.units = (self.units + units)[-self.MAX_BLOBS:]
        return len(new) + len(hists) + len(units)

    def _merge(self, new) -> None:
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
