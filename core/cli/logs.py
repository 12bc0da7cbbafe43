"""`actlab logs summarize|parse ...`: uploaded logs from the command line (the compare page's engine)."""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from ..errors import UserError
from .. import argtypes as T
from ..analysis.compare import summarize
from ..logs.loader import load_paths, variant_seed_of
from ..logs.parsed import LoadResult
from ..logs.tensorboard import VERIFY_CRC_ENV
from ..logs.user_regex import compile_user_regex


def add_cli(sub) -> None:
    p = sub.add_parser("logs", help="read training logs in any common format; compare variants")
    s = p.add_subparsers(dest="action", required=True)
    sp = s.add_parser("summarize", help="per-run final/best, per-variant mean/CI, pairwise verdicts")
    sp.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    sp.add_argument("--metric", help="scalar key to compare (default: the key most runs share, accuracy-like first; the output says why)")
    sp.add_argument("--use", choices=("final", "best"), default="final")
    sp.add_argument("--regex", help="override detection: named groups step/epoch/key/value or one per metric")
    sp.add_argument("--test", choices=("auto", "welch", "permutation"), default="auto")
    sp.add_argument("--alpha", type=T.open_unit, default=0.05)
    sp.add_argument("--json", action="store_true", help="print JSON (the default prints a table)")
    sp.add_argument("--no-crc", action="store_true",
                    help="skip TensorBoard records' CRC checks (about 2x faster; corrupt records go undetected)")
    sp.set_defaults(func=_cli_summarize)
    pp = s.add_parser("parse", help="print the tidy scalar table as CSV")
    pp.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    pp.add_argument("--regex")
    pp.add_argument("--no-crc", action="store_true",
                    help="skip TensorBoard records' CRC checks (about 2x faster; corrupt records go undetected)")
    pp.set_defaults(func=_cli_parse)


def _problems(res: LoadResult) -> dict:
    return {
        "unparsed": [{"file": l.name, "count": l.n_unparsed,
                      "lines": [{"line": n, "text": t} for n, t in l.unparsed[:50]]} for l in res.logs if l.n_unparsed],
        "errors": [{"file": f, "error": e} for f, e in res.errors],
        "warnings": [w for l in res.logs for w in l.warnings],
        "percent_keys": sorted({k for l in res.logs for k in l.percent_keys}),
    }


def _crc_option(args) -> None:
    # Through the environment, so every reader the loader reaches (zips, folders, tracker runs) sees it.
    if args.no_crc:
        os.environ[VERIFY_CRC_ENV] = "0"


def _cli_summarize(args) -> int:
    _crc_option(args)
    if args.regex:
        compile_user_regex(args.regex)
    res = load_paths(args.paths, args.regex)
    if not res.logs:
        detail = "; ".join(f"{f}: {e}" for f, e in res.errors) or "no log files found"
        raise UserError(f"no runs could be read ({detail})")
    table = variant_seed_of(res)
    out = summarize(res.scalars(), args.metric, use=args.use, runs=table, test=args.test, alpha=args.alpha)
    out.update(_problems(res))
    if args.json:
        print(json.dumps(out, indent=2, default=_json_default))
        return 0
    print(f"metric {out['metric_reason']} ({out['use']}), test {out['test']}")
    for v in out["variants"]:
        iqm = f" iqm={_f(v['iqm'])} [{_f(v['iqm_ci95'][0])}, {_f(v['iqm_ci95'][1])}]" if v["iqm_ci95"] else ""
        print(f"  {v['variant']:<28} n={v['n']:<3} mean={_f(v['mean'])} std={_f(v['std'])} ci95=±{_f(v['ci95'])}{iqm}")
    for c in out["comparisons"]:
        ci = f"[{_f(c['diff_ci95'][0])}, {_f(c['diff_ci95'][1])}]" if c["diff_ci95"] else "[n/a]"
        print(f"  {c['a']} vs {c['b']}: diff={_f(c['diff'])} {ci} p={_f(c['p_value'])} holm={_f(c['p_adjusted'])} "
              f"P(a beats b)={_f(c['prob_improvement'])} mde={_f(c['mde'])} seeds_needed={c['seeds_needed'] or 'n/a'}"
              f" -> {c['verdict']}")
    print(out["summary"])
    for f, e in res.errors:
        print(f"  error: {f}: {e}")
    for u in out["unparsed"]:
        print(f"  {u['file']}: {u['count']} lines not understood, e.g. line {u['lines'][0]['line']}: {u['lines'][0]['text'][:80]!r}")
    return 0


def _f(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    return str(o)


def _cli_parse(args) -> int:
    _crc_option(args)
    res = load_paths(args.paths, args.regex)
    for f, e in res.errors:
        print(f"error: {f}: {e}", file=sys.stderr)
    res.scalars().to_csv(sys.stdout, index=False)
    return 0 if res.logs else 2
