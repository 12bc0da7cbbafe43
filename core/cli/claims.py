"""`actlab claims list|measure`: the notes' claims, settled by result files."""
from __future__ import annotations

import json
from pathlib import Path

from ..analysis.claim_measures import measure_ffn_sparsity, measure_mnist, measure_sigmoid_derivative
from ..analysis.claims import MNIST_EPOCHS, claim_rows
from ..errors import UserError


def add_cli(sub) -> None:
    from .. import argtypes as T

    p = sub.add_parser("claims", help="the notes' claims, settled by result files")
    s = p.add_subparsers(dest="action", required=True)
    ls = s.add_parser("list", help="one row per claim from bench/results")
    ls.add_argument("--results-dir", default=None)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_cli_list)
    m = s.add_parser("measure", help="measure one claim and write its result file")
    m.add_argument("what", choices=["sigmoid-derivative", "mnist", "ffn-sparsity"])
    m.add_argument("--out", type=Path, required=True, help="result file, e.g. bench/results/NAME.json")
    m.add_argument("--device", default="auto")
    m.add_argument("--data", default=None, help="mnist: bundled|full; ffn-sparsity: demo or a pairs file")
    m.add_argument("--data-dir", default=None, help="mnist --data full: folder with the IDX files")
    m.add_argument("--epochs", type=T.non_negative_int, default=None, help="mnist epochs (10) / ffn-sparsity fine-tune epochs (1)")
    m.add_argument("--backbone", default="minilm")
    m.set_defaults(func=_cli_measure)


def _cli_list(args) -> int:
    rows = claim_rows(Path(args.results_dir) if args.results_dir else None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"[{r['status']}] {r['claim']} ({r['source']})\n    measured: {r['measured']}\n    machine: {r['machine']}")
        for m in r["missing"] + r["problems"]:
            print(f"    - {m}")
    return 0


def _cli_measure(args) -> int:
    if args.epochs is not None and args.epochs < (0 if args.what == "ffn-sparsity" else 1):
        raise UserError(f"--epochs must be at least {0 if args.what == 'ffn-sparsity' else 1}, got {args.epochs}")
    if args.what == "sigmoid-derivative":
        result = measure_sigmoid_derivative()
    elif args.what == "mnist":
        if (args.data or "bundled") not in ("bundled", "full"):
            raise UserError(f"--data for mnist must be bundled or full, got {args.data!r}")
        result = measure_mnist(args.data or "bundled", args.data_dir, args.epochs or MNIST_EPOCHS, args.device)
    else:
        result = measure_ffn_sparsity(args.backbone, args.data or "demo", finetune_epochs=1 if args.epochs is None else args.epochs,
                                      device=args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0
