"""`actlab activations list|eval`: the registry from the command line."""
from __future__ import annotations

import torch

from .. import argtypes as T
from ..activations import REGISTRY, derivatives, describe, parse_param_args


def add_cli(sub) -> None:
    p = sub.add_parser("activations", help="list and evaluate activations")
    s = p.add_subparsers(dest="action", required=True)
    lp = s.add_parser("list", help="name, parameters and properties of each")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_cli_list)
    ep = s.add_parser("eval", help="f, f' and f'' at given points")
    ep.add_argument("name")
    ep.add_argument("--x", type=T.finite_float, nargs="+", required=True)
    ep.add_argument("--param", type=T.key_value, action="append", metavar="KEY=VALUE")
    ep.add_argument("--json", action="store_true")
    ep.set_defaults(func=_cli_eval)


def _cli_list(args) -> int:
    import json

    rows = [describe(n) for n in REGISTRY]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            params = ", ".join(f"{k}={v['default']}" for k, v in r["parameters"].items())
            print(f"{r['name']:<15} {params:<20} {r['description']}")
    return 0


def _cli_eval(args) -> int:
    import json

    params = parse_param_args(args.param)
    y, dy, d2y = derivatives(args.name, torch.tensor(args.x, dtype=torch.float64), **params)
    out = {"x": args.x, "y": y.tolist(), "dy": dy.tolist(), "d2y": d2y.tolist()}
    if args.json:
        print(json.dumps(out))
    else:
        for row in zip(*out.values()):
            print("\t".join(f"{v:.6g}" for v in row))
    return 0
