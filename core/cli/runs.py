"""`actlab runs list|show|recycle|events`: the run store from the command line."""
from __future__ import annotations

import json
import time

from .. import paths
from ..argtypes import existing_run_name, non_negative_float, unit_interval
from ..store.audit import attach_audits
from ..store.runs import RunStore


def add_cli(sub) -> None:
    p = sub.add_parser("runs", help="list and show runs in the store")
    s = p.add_subparsers(dest="action", required=True)
    runs_dir = str(paths.runs_dir())
    lp = s.add_parser("list")
    lp.add_argument("--runs-dir", default=runs_dir)
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_cli_list)
    sp = s.add_parser("show")
    sp.add_argument("run", type=existing_run_name)
    sp.add_argument("--runs-dir", default=runs_dir)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cli_show)
    rp = s.add_parser("recycle", help="recycle a running run's dead or tau-dormant units at its next flush")
    rp.add_argument("run", type=existing_run_name)
    rp.add_argument("--layer", required=True, help="a hooked layer (actlab runs show RUN --json: config.watch)")
    how = rp.add_mutually_exclusive_group()
    how.add_argument("--tau", type=unit_interval, default=None, help="recycle units with tau-score <= TAU (default: the run's tau)")
    how.add_argument("--dead", action="store_true", help="recycle the units dead over the window instead")
    how.add_argument("--by", choices=("dead", "redo", "grama", "utility", "age"), default=None,
                     help="which dormancy definition picks the units (grama/utility/age need the dormancy "
                          "plug-in on the run; docs/dormancy.md)")
    rp.add_argument("--convention", choices=("redo", "cbp"), default=None,
                    help="optimizer state: redo (default) zeroes Adam's moments and keeps the step; cbp also "
                         "restarts the step and moves the units' mean contribution into the next layer's bias")
    rp.add_argument("--id", default=None, help="command id (the same id twice is one command)")
    rp.add_argument("--wait", type=non_negative_float, default=0.0, metavar="S",
                    help="wait up to S seconds for the trainer to apply it")
    rp.add_argument("--runs-dir", default=runs_dir)
    rp.set_defaults(func=_cli_recycle)
    ep = s.add_parser("events", help="what the control path did to a run (recycles, refusals)")
    ep.add_argument("run", type=existing_run_name)
    ep.add_argument("--runs-dir", default=runs_dir)
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
                **({"tau": args.tau} if args.tau is not None else {}),
                **({"by": args.by} if args.by else {}), **({"convention": args.convention} if args.convention else {})}
    cmd = store.send_command(args.run, "recycle", cmd_args, command_id=args.id)
    with store.open(args.run) as r:
        every = r.config.get("log_every", "?")
    print(f"command {cmd['id']} {'already queued' if cmd['duplicate'] else 'queued'}: recycle {args.layer} "
          f"({args.by or ('dead' if args.dead else 'redo')} units, {args.convention or 'redo'} convention); "
          f"the trainer applies it at its next flush "
          f"(every {every} steps)")
    deadline = time.time() + args.wait
    while args.wait and time.time() < deadline:
        with store.open(args.run) as r:
            done = next((c for c in r.commands() if c["id"] == cmd["id"] and c["state"] != "pending"), None)
        if done:
            print(f"{done['state']} at step {done['applied_step']}: {done['result']}")
            return 0 if done["state"] == "applied" else 1
        time.sleep(0.2)
    return 0


def _cli_events(args) -> int:
    with RunStore(args.runs_dir).open(args.run) as r:
        events = attach_audits(r.events())
    if args.json:
        print(json.dumps(events, indent=2, default=str))
    else:
        for e in events:
            audit = (" | flagged again: " + " ".join(f"{f:.0%}" for f in e["audit"])) if e.get("audit") else ""
            print(f"step {e['step']:>7}  {e['kind']:<8} {e['layer'] or '-':<28} {e['reason']}{audit}")
        if not events:
            print(f"{args.run}: no events")
    return 0
