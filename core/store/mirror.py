"""Mirror a run from one store into another, flush by flush (a Ray grid's workers -> the driver).

A worker trains into a store of its own (a temporary folder on its machine). `RunTail.read()`
takes what was written there since the last call as one plain, picklable batch; on the driver,
`Mirror.apply(name, batch)` writes it into the driver's store through the same writer, so the run
there looks like a local one: its config, layers, host and trainer pid, status and heartbeat,
scalars (and the series pyramid), histograms, per-unit activity, events and command results.
Commands go the other way: `pending_commands(store, name)` on the driver, `deliver(store, name,
commands)` on the worker, where the watcher applies them at its next flush as it would locally.

A batch that carries `meta` opens the run on the driver. When the run is there already (a retried
worker), what it holds after the retry's starting step is superseded, as a local resume does
(`resume_step` None = started again from nothing: every row goes). So the driver's store keeps one
value per (run, step, key) whatever the workers went through.
"""
from __future__ import annotations

import json
import math
import time

from ..errors import UserError
from .runs import RunStore, RunWriter

FINAL = ("finished", "stopped", "failed")


def _num(v):
    """NaN (pandas' missing value) -> None, for the writer and for pickling small."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


class RunTail:
    """The worker's side: what its local run gained since the last read."""

    def __init__(self, store: RunStore, name: str, resume_step: int | None = None):
        self.store, self.name, self.resume_step = store, name, resume_step
        self.cursors = {"scalars": 0, "histograms": 0, "units": 0, "events": 0}
        self.opened = False
        self.status: tuple | None = None
        self.commands: dict[str, str] = {}  # command id -> the state last sent

    def read(self) -> dict | None:
        if not self.store.exists(self.name):
            return None
        with self.store.open(self.name) as r:
            batch: dict = {}
            if not self.opened:
                batch["meta"], batch["resume_step"] = r.meta, self.resume_step
                self.opened = True
            # The status first: a batch never says "finished" before the rows written before it.
            status = r.con.execute("SELECT state, reason, pid, heartbeat, started FROM status WHERE id = 1").fetchone()
            df, self.cursors["scalars"] = r.scalars(after_id=self.cursors["scalars"])
            if len(df):
                batch["scalars"] = [(int(s), _num(e), k, _num(v), float(t)) for s, e, k, v, t in
                                    zip(df["step"], df["epoch"], df["key"], df["value"], df["wall_time"])]
            hists = r.histograms(after_id=self.cursors["histograms"])
            if hists:
                self.cursors["histograms"] = hists[-1]["id"]
                batch["histograms"] = [{k: h[k] for k in ("step", "epoch", "key", "edges", "counts")} for h in hists]
            units = r.unit_activity(after_id=self.cursors["units"])
            if units:
                self.cursors["units"] = units[-1]["id"]
                batch["units"] = [{k: u[k] for k in ("step", "epoch", "key", "values")} for u in units]
            events = r.events(after_id=self.cursors["events"])
            if events:
                self.cursors["events"] = events[-1]["id"]
                batch["events"] = [{k: e[k] for k in ("step", "kind", "layer", "units", "reason", "command_id", "details")}
                                   for e in events]
            done = [c for c in r.commands() if c["state"] != "pending" and self.commands.get(c["id"]) != c["state"]]
            if done:
                batch["commands"] = [{k: c[k] for k in ("id", "state", "result", "applied_step")} for c in done]
                self.commands.update({c["id"]: c["state"] for c in done})
        if status is not None and status != self.status:
            batch["status"], self.status = status, status
        return batch or None


def deliver(store: RunStore, name: str, commands: list[dict]) -> None:
    """The worker's side: queue the driver's pending commands in the local run (the same ids, so a
    command delivered twice is one command). One the local run refuses (it has just ended) stays
    pending on the driver until the run's final status arrives there and refuses it."""
    for c in commands:
        try:
            store.send_command(name, c["kind"], c["args"], command_id=c["id"])
        except UserError:
            pass


def pending_commands(store: RunStore, name: str) -> list[dict]:
    """The driver's side: commands the page (or `runs recycle`) queued for a mirrored run."""
    if not store.exists(name):
        return []
    with store.open(name) as r:
        return [{k: c[k] for k in ("id", "kind", "args")} for c in r.commands() if c["state"] == "pending"]


class Mirror:
    """The driver's side: applies batches to its store, one writer per mirrored run."""

    def __init__(self, store: RunStore):
        self.store = store
        self.writers: dict[str, RunWriter] = {}

    def apply(self, name: str, batch: dict) -> None:
        if "meta" in batch:
            self._open(name, batch["meta"], batch.get("resume_step"))
        w = self.writers.get(name)
        if w is None:  # rows of a run whose opening batch never came: nothing to attach them to
            return
        rows: dict[tuple, dict] = {}
        for step, epoch, key, value, t in batch.get("scalars", []):
            rows.setdefault((step, epoch, t), {})[key] = float("nan") if value is None else value
        for (step, epoch, t), values in rows.items():
            w.log_scalars(step, values, epoch=epoch, wall_time=t)
        for h in batch.get("histograms", []):
            w.log_histogram(h["step"], h["key"], h["edges"], h["counts"], epoch=h["epoch"])
        for u in batch.get("units", []):
            w.log_unit_activity(u["step"], u["key"], u["values"], epoch=u["epoch"])
        for e in batch.get("events", []):
            w.log_event(e["step"], e["kind"], e["layer"], e["units"], e["reason"], e["command_id"], e["details"])
        with w.con:
            for c in batch.get("commands", []):
                w.con.execute("UPDATE commands SET state = ?, result = ?, applied_step = ?, updated = ? WHERE id = ?",
                              (c["state"], c["result"], c["applied_step"], time.time(), c["id"]))
            if "status" in batch:
                state, reason, pid, beat, started = batch["status"]
                w.con.execute("UPDATE status SET state = ?, reason = ?, pid = ?, heartbeat = ?, started = ? WHERE id = 1",
                              (state, reason, pid, beat, started))
        if "status" in batch and batch["status"][0] in FINAL:
            self._refuse_pending(name, w, batch["status"][0])

    def _open(self, name: str, meta: dict, resume_step: int | None) -> None:
        old = self.writers.pop(name, None)
        if old is not None:
            old.close()
        exists = self.store.exists(name)
        w = self.store.create(name, meta.get("config", {}), kind=meta.get("kind", ""), resume=exists,
                              layers=meta.get("layers"),
                              resume_step=(-1 if resume_step is None else int(resume_step)) if exists else None)
        # The worker's run.json as it is (its host, so readers judge the trainer's pid on the right
        # machine), keeping when the run was first created here.
        path = self.store.path(name) / "run.json"
        created = json.loads(path.read_text()).get("created") if exists else meta.get("created")
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**meta, "created": created}, indent=2, default=str))
        tmp.replace(path)
        self.writers[name] = w

    def _refuse_pending(self, name: str, w: RunWriter, state: str) -> None:
        step = w.con.execute("SELECT COALESCE(MAX(step), 0) FROM scalars").fetchone()[0]
        for c in pending_commands(self.store, name):
            w.log_event(step, "refused", (c["args"] or {}).get("layer"), None,
                        f"the run ended ({state}) before the command was applied", c["id"], None, command_state="refused")

    def mark(self, name: str, state: str, reason: str) -> None:
        """A run the worker could not close (it died for good): the driver says how it ended."""
        if name not in self.writers:
            self.writers[name] = RunWriter(self.store.path(name), name)
        self.writers[name].set_status(state, reason)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()
