"""Run store: a directory per run holding run.json (config) and metrics.db (SQLite, WAL mode).

Scalar schema everywhere: (run, step, epoch, key, value, wall_time). The store is split by what
each part does; this module holds RunStore (a folder of runs) and re-exports the rest, so
`from actlab.store.runs import RunStore, RunReader, ...` keeps working:

    schema.py    tables, connections, migrations         (run names: core/run_names.py)
    writer.py    RunWriter (the trainer's one writer)     reader.py    RunReader (context manager), RunStatus
    commands.py  the control path: commands and events    follower.py  RunFollower (incremental live reads)
    series.py    the min/max pyramid and downsampled reads
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .. import paths
from ..errors import UserError
from . import commands as _commands
from .commands import COMMAND_KINDS
from .follower import RunFollower
from ..run_names import check_lookup_name, validate_run_name
from .reader import RunReader, RunStatus
from .schema import (SCALAR_COLUMNS, SCHEMA as _SCHEMA, STALE_AFTER_S, STATES, connect, create_database,
                     migrate_for_readers, take_over)
from .writer import RunWriter

__all__ = ["COMMAND_KINDS", "SCALAR_COLUMNS", "STALE_AFTER_S", "STATES", "RunFollower", "RunReader", "RunStatus",
           "RunStore", "RunWriter", "_SCHEMA", "check_lookup_name", "validate_run_name"]


class RunStore:
    """A folder of runs (default: actlab.paths.runs_dir(), read when the store is built). Names
    are validated before they touch the file system."""

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
            create_database(db, os.getpid(), now)
        writer = RunWriter(run_dir, name, background_checkpoints=True)
        try:
            take_over(writer.con, os.getpid(), now, resume_step)
        except BaseException:
            writer.close()
            raise
        return writer

    def open(self, name: str) -> RunReader:
        """A reader of one run; use it in a `with` block so its connection is closed."""
        if not self.exists(name):
            raise UserError(f"no run {name!r} in {self.root}")
        migrate_for_readers(self.path(name) / "metrics.db")
        return RunReader(self.path(name), name)

    def send_command(self, name: str, kind: str, args: dict, command_id: str | None = None) -> dict:
        """Queue a command for a running run. Refused (UserError) for a run that is not running (finished,
        failed, stopped, or stale: its trainer is gone), for an unknown kind, and for a layer the run
        does not have. The same `command_id` again returns the first command, unchanged."""
        import uuid

        _commands.check_kind(kind)
        with self.open(name) as r:
            st, meta = r.status(), r.meta
        cid = command_id or uuid.uuid4().hex
        _commands.check_id(cid)
        con = connect(self.path(name) / "metrics.db")
        try:
            _commands.ensure_tables(con)
            old = _commands.find(con, cid)
            if old is not None:
                return {**old, "duplicate": True}
            if st.state != "running":
                why = f" ({st.reason})" if st.reason else ""
                raise UserError(f"run {name!r} is {st.state}{why}: commands go to a running run")
            _commands.check_target(name, kind, args, meta)
            return {**_commands.insert(con, cid, kind, args), "duplicate": False}
        finally:
            con.close()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        runs = [p for p in self.root.iterdir() if (p / "metrics.db").exists() and (p / "run.json").exists()]
        return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]

    def summary(self, name: str) -> dict:
        with self.open(name) as r:
            meta, st = r.meta, r.status()
            return {"name": name, "kind": meta.get("kind", ""), "created": meta.get("created"),
                    "status": st.state, "reason": st.reason, "heartbeat_age_s": round(st.heartbeat_age_s, 1),
                    "config": meta.get("config", {}), "last": r.last()}
