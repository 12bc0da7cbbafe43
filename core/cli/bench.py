"""`actlab bench activations`: time each activation against a plain copy."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import argtypes as T
from ..analysis.benchmark import DTYPES, bench_activations


def add_cli(sub) -> None:
    p = sub.add_parser("bench", help="micro-benchmarks")
    s = p.add_subparsers(dest="bench", required=True)
    a = s.add_parser("activations", help="forward / forward+backward time of each activation vs a plain copy")
    a.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a.add_argument("--numel", type=T.positive_int, default=1 << 24, help="elements in the test tensor (default 16M)")
    a.add_argument("--dtype", default="float32", choices=list(DTYPES))
    a.add_argument("--compile", action="store_true", help="time torch.compile'd modules")
    a.add_argument("--repeats", type=T.positive_int, default=20)
    a.add_argument("--warmup", type=T.non_negative_int, default=5)
    a.add_argument("--threads", type=T.positive_int, help="CPU intra-op threads (default: torch's choice)")
    a.add_argument("--only", help="comma-separated activation names (default: all scalar ones)")
    a.add_argument("--out", type=Path, help="also write the JSON result here")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_cli_activations)


def _cli_activations(args) -> int:
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    result = bench_activations(args.device, args.numel, args.dtype, args.compile, args.repeats, args.warmup, only, args.threads)
    result["meta"]["command"] = "actlab " + " ".join(sys.argv[1:])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["meta"]
        print(f"{m['device']} ({m['device_name']}), {m['numel']:,} x {m['dtype']}, compile={m['compile']}")
        print("% bw: share of the bandwidth limit a copy measures (fwd: 2 tensors moved; fwd+bwd: 5)")
        print(f"{'name':<12}{'fwd ms':>10}{'fwd+bwd ms':>12}{'Gelem/s':>10}{'GB/s':>8}{'% bw fwd':>10}{'% bw f+b':>10}")
        for r in result["results"]:
            fb = r["pct_of_bandwidth_fwd_bwd"]
            print(f"{r['name']:<12}{r['forward_ms']:>10.3f}{r['forward_backward_ms']:>12.3f}"
                  f"{r['elements_per_s'] / 1e9:>10.3f}{r['gb_per_s']:>8.2f}{r['pct_of_copy']:>10.1f}"
                  f"{'-' if fb is None else f'{fb:.1f}':>10}")
    return 0
