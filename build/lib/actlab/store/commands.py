"""The control path's rows: commands (dashboard/CLI -> trainer) and events (trainer -> every chart).

Ids make a command idempotent: the same id sent twice (a double click, a page rerun) is one
command. The trainer closes a command in the same transaction that writes its event, so a crash
never leaves a command applied twice or an event without its command.
"""
from __future__ import annotations

import json
import sqlite3
import time

from ..errors import UserError
from .schema import CONTROL_SCHEMA, has_table

COMMAND_KINDS = ("recycle",)
_COMMAND_COLUMNS = "id, kind, args, created, state, result, applied_step"


def _command(row) -> dict:
    i, k, a, c, s, r, at = row
    return {"id": i, "kind": k, "args": json.loads(a), "created": c, "state": s, "result": r, "applied_step": at}


def check_kind(kind: str) -> None:
    if kind not in COMMAND_KINDS:
        raise UserError(f"unknown command {kind!r}; expected one of {', '.join(COMMAND_KINDS)}")


def check_id(command_id) -> None:
    if not isinstance(command_id, str) or not 0 < len(command_id) <= 64:
        raise UserError("a command id is a string of 1 to 64 characters")


def check_target(name: str, kind: str, args: dict, meta: dict) -> None:
    """Refuse a command for a layer the run does not have, or one that cannot be recycled."""
    layer = args.get("layer")
    layers = meta.get("layers", {})
    if kind == "recycle":
        if layer not in layers:
            raise UserError(f"run {name!r} has no layer {layer!r}; its layers: {', '.join(layers) or 'none'}")
        why = layers[layer].get("recycle")
        if isinstance(why, str) and why.startswith("cannot"):
            raise UserError(f"{layer}: {why}")


def find(con: sqlite3.Connection, command_id: str) -> dict | None:
    row = con.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?", (command_id,)).fetchone()
    return None if row is None else _command(row)


def insert(con: sqlite3.Connection, command_id: str, kind: str, args: dict) -> dict:
    now = time.time()
    with con:
        con.execute("INSERT INTO commands(id, kind, args, created, state) VALUES (?,?,?,?, 'pending')",
                    (command_id, kind, json.dumps(args), now))
    return {"id": command_id, "kind": kind, "args": args, "created": now, "state": "pending", "result": None,
            "applied_step": None}


def ensure_tables(con: sqlite3.Connection) -> None:
    con.executescript(CONTROL_SCHEMA)


def pending(con: sqlite3.Connection) -> list[dict]:
    """Commands not yet applied, oldest first (read once per flush, never per step)."""
    rows = con.execute("SELECT id, kind, args, created FROM commands WHERE state = 'pending' "
                       "ORDER BY created, id").fetchall()
    return [{"id": i, "kind": k, "args": json.loads(a), "created": c} for i, k, a, c in rows]


def all_commands(con: sqlite3.Connection) -> list[dict]:
    if not has_table(con, "commands"):  # a store from before the control path (and readers are read-only)
        return []
    return [_command(r) for r in con.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands ORDER BY created, id")]


def write_event(con: sqlite3.Connection, run: str, step: int, kind: str, layer: str | None, units: int | None,
                reason: str | None, command_id: str | None, details: dict | None, command_state: str | None) -> None:
    t = time.time()
    with con:
        con.execute(
            "INSERT INTO events(run, step, kind, layer, units, reason, command_id, details, wall_time) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (run, int(step), kind, layer, units, reason, command_id, json.dumps(details or {}, default=str), t))
        if command_id is not None and command_state is not None:
            con.execute("UPDATE commands SET state = ?, result = ?, applied_step = ?, updated = ? WHERE id = ?",
                        (command_state, reason, int(step), t, command_id))


def events(con: sqlite3.Connection, run: str, after_id: int = 0) -> list[dict]:
    if not has_table(con, "events"):
        return []
    rows = con.execute("SELECT id, step, kind, layer, units, reason, command_id, details, wall_time "
                       "FROM events WHERE id > ? ORDER BY id", (after_id,)).fetchall()
    return [{"id": i, "run": run, "step": s, "kind": k, "layer": ly, "units": u, "reason": r,
             "command_id": c, "details": json.loads(d or "{}"), "wall_time": w}
            for i, s, k, ly, u, r, c, d, w in rows]
