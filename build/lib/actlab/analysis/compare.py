"""Ablation statistics over the tidy scalar table: is a variant's difference larger than seed noise?

Per run: `final` (value at the last step), `best` (max for accuracy-like keys, min for loss-like),
`n_points`. Per variant: `n`, `mean`, `std` (ddof 1), `ci95` (half-width, Student t), and with >= 4
runs the `iqm` with a bootstrap interval. Per pair of variants: `diff` = mean(a) - mean(b) with a
bootstrap `diff_ci95`; `p_value` from Welch's t-test, or an exact/Monte-Carlo permutation test when
a side has fewer than 3 runs or no spread (Welch's t is undefined or unreliable there);
`p_adjusted` (Holm over all pairs); `verdict`: "within noise" unless p_adjusted < alpha, then the
better variant's name; `prob_improvement`, `mde` and `seeds_needed` (see core.stats).
"""
from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import UserError
from . import stats as S
from ..logs.names import infer_variant_seed

WITHIN_NOISE = "within noise"
VARIANT_COLUMNS = ["variant", "n", "mean", "std", "ci95", "iqm", "iqm_lo", "iqm_hi"]
PAIR_COLUMNS = ["a", "b", "n_a", "n_b", "diff", "diff_lo", "diff_hi", "p_value", "p_adjusted", "verdict", "test",
                "prob_improvement", "mde", "seeds_needed"]
_LOWER_IS_BETTER = re.compile(r"loss|err|perplex|ppl|mse|mae|rmse|nll|dead|time|latency|wer|cer|regret", re.I)
_ACC_LIKE = re.compile(r"acc|top\d|mrr|ndcg|f1|auc|precision|recall|map\b|bleu|rouge|score", re.I)


def higher_is_better(key: str) -> bool:
    return not _LOWER_IS_BETTER.search(key)


def run_metrics(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """One row per (run, key): final, best, n_points. NaN values (diverged steps) are not points."""
    d = df[df["value"].notna()]
    if keys is not None:
        d = d[d["key"].isin(keys)]
    if not len(d):
        return pd.DataFrame(columns=["run", "key", "final", "best", "n_points"])
    # Stable sort keeps file order among equal steps, so "final" is the last one printed.
    d = d.sort_values(["run", "key", "step"], kind="stable")
    g = d.groupby(["run", "key"], sort=False, observed=True)["value"]
    out = pd.DataFrame({"final": g.last(), "max": g.max(), "min": g.min(), "n_points": g.size()}).reset_index()
    hib = out["key"].map(higher_is_better)
    out["best"] = np.where(hib, out["max"], out["min"])
    return out[["run", "key", "final", "best", "n_points"]]


def _key_rank(key: str) -> tuple:
    """Among equally shared keys: accuracy-like and higher-is-better first; then held-out over train;
    then top-1 over top-k (k > 1)."""
    acc = bool(_ACC_LIKE.search(key)) and higher_is_better(key)
    train = bool(re.search(r"(?<![a-z])train", key, re.I))
    topk = bool(re.search(r"top[-_ ]?(?!1(?!\d))\d+", key, re.I))
    return (not acc, train, topk)


def choose_metric(df: pd.DataFrame, runs=None) -> tuple[str, str]:
    """The default metric and why. Keys are ranked by: shared by two or more variants (else there is
    no verdict to show); accuracy-like and higher-is-better (what an ablation is judged on; every run
    logs a loss); logged by the most runs; held-out over train; top-1 over top-k; the most points;
    first logged. Returns (key, reason)."""
    d = df[df["value"].notna()]
    keys = list(dict.fromkeys(d["key"].tolist()))
    if not keys:
        raise UserError("no scalar values to compare")
    a = _assignments(d, runs)
    variant_of = dict(zip(a["run"], a["variant"]))
    g = d.groupby("key", sort=False, observed=True)
    n_runs = {k: int(v) for k, v in g["run"].nunique().items()}
    n_vars = {k: len({variant_of.get(r, r) for r in rs.unique()}) for k, rs in g["run"]}
    points = {k: int(v) for k, v in g.size().items()}
    order = {k: i for i, k in enumerate(keys)}
    rank = {}
    for k in keys:
        acc, train, topk = _key_rank(k)
        rank[k] = (-min(n_vars[k], 2), acc, -n_runs[k], train, topk, -points[k], order[k])
    ranked = sorted(keys, key=rank.__getitem__)
    best = ranked[0]
    why = f"{best}: logged by {n_runs[best]} of {d['run'].nunique()} runs in {n_vars[best]} variants"
    if len(ranked) > 1:
        r = ranked[1]
        i = next(i for i, (x, y) in enumerate(zip(rank[best], rank[r])) if x != y)
        because = [f"{r} is logged by only one variant", "it is accuracy-like (higher is better)",
                   f"{r} is logged by fewer runs ({n_runs[r]})", f"{r} is a training-set metric",
                   f"it is top-1 and {r} is top-k", f"it has more points ({points[best]} vs {points[r]})",
                   "it is logged first"][i]
        why += f"; chosen over {r} because {because}"
    return best, why + f"; {'higher' if higher_is_better(best) else 'lower'} is better"


def pick_metric(df: pd.DataFrame, metric: str | None = None, runs=None) -> str:
    if metric:
        keys = set(df["key"].tolist())
        if metric not in keys:
            raise UserError(f"metric {metric!r} not found; keys: {', '.join(sorted(keys)[:20])}")
        return metric
    return choose_metric(df, runs)[0]


def ci95(values) -> float:
    x = np.asarray(values, float)
    n = len(x)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))


def describe(values) -> dict:
    """n, mean, std (ddof 1), ci95 (Student t half-width); with >= 4 runs also the IQM and its
    percentile-bootstrap 95% interval (fewer runs leave no middle half to speak of)."""
    x = np.asarray(values, float)
    n = len(x)
    out = {"n": n, "mean": float(x.mean()) if n else math.nan,
           "std": float(x.std(ddof=1)) if n > 1 else math.nan, "ci95": ci95(x),
           "iqm": math.nan, "iqm_ci95": (math.nan, math.nan)}
    if n >= 4:
        out["iqm"], out["iqm_ci95"] = S.iqm(x), S.bootstrap_ci(x, S.iqm)
    return out


def compare_pair(a_name: str, a, b_name: str, b, higher_better: bool = True, alpha: float = 0.05,
                 test: str = "auto") -> dict:
    """One pair of variants. `p_adjusted` equals `p_value` here; comparisons() corrects it over all
    pairs and redoes the verdict."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    p, used = math.nan, None
    if len(a) + len(b) >= 3 and len(a) and len(b):
        degenerate = min(len(a), len(b)) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0
        used = "permutation" if test == "permutation" or (test == "auto" and degenerate) else "welch"
        if used == "welch" and min(len(a), len(b)) < 2:
            used = "permutation"
        p = S.welch_p(a, b) if used == "welch" else S.permutation_p(a, b)
    sd = S.pooled_std(a, b)
    out = {"a": a_name, "b": b_name, "n_a": len(a), "n_b": len(b), "diff": diff,
           "diff_ci95": S.bootstrap_diff_ci(a, b), "p_value": p, "p_adjusted": p, "verdict": WITHIN_NOISE,
           "test": used, "prob_improvement": S.prob_improvement(a, b, higher_better),
           "mde": S.mde(len(a), len(b), sd), "seeds_needed": S.seeds_needed(diff, sd)}
    out["verdict"] = _verdict(out, higher_better, alpha)
    return out


def _verdict(c: dict, higher_better: bool, alpha: float) -> str:
    p, diff = c["p_adjusted"], c["diff"]
    if math.isfinite(p) and p < alpha and diff != 0:
        return c["a"] if (diff > 0) == higher_better else c["b"]
    return WITHIN_NOISE


def _assignments(df: pd.DataFrame, runs: pd.DataFrame | dict | None) -> pd.DataFrame:
    """run -> variant, seed. `runs` is a table with run/variant/seed, a {run: variant} dict, or None
    (then the names are read: with_relu_seed2 -> with_relu, 2)."""
    names = list(dict.fromkeys(df["run"].tolist()))
    if isinstance(runs, pd.DataFrame):
        t = runs.drop_duplicates("run").set_index("run")
        rows = [(r, t["variant"].get(r), t["seed"].get(r) if "seed" in t else None) for r in names]
    elif isinstance(runs, dict):
        rows = [(r, runs.get(r), None) for r in names]
    else:
        rows = [(r, None, None) for r in names]
    out = []
    for r, v, s in rows:
        iv, iseed = infer_variant_seed(r)
        v = v if isinstance(v, str) and v.strip() else iv
        s = s if s is not None and not (isinstance(s, float) and math.isnan(s)) else iseed
        out.append({"run": r, "variant": str(v).strip(), "seed": None if s is None or pd.isna(s) else int(s)})
    return pd.DataFrame(out, columns=["run", "variant", "seed"])


def variant_table(df: pd.DataFrame, metric: str, use: str = "final", runs=None) -> pd.DataFrame:
    """Per variant: n, mean, std, ci95, iqm, iqm_lo, iqm_hi of each run's final (or best) `metric`."""
    per_run = run_values(df, metric, use, runs)
    rows = []
    for v, g in per_run.groupby("variant", sort=False):
        d = describe(g["value"].to_numpy())
        lo, hi = d.pop("iqm_ci95")
        rows.append({"variant": v, **d, "iqm_lo": lo, "iqm_hi": hi})
    return pd.DataFrame(rows, columns=VARIANT_COLUMNS)


def run_values(df: pd.DataFrame, metric: str, use: str = "final", runs=None) -> pd.DataFrame:
    if use not in ("final", "best"):
        raise UserError(f"use must be 'final' or 'best', not {use!r}")
    m = run_metrics(df, [metric])
    a = _assignments(df, runs)
    out = a.merge(m, on="run", how="inner")
    return out.assign(value=out[use])[["run", "variant", "seed", "value", "final", "best", "n_points"]]


def comparisons(df: pd.DataFrame, metric: str, use: str = "final", runs=None, alpha: float = 0.05,
                test: str = "auto") -> list[dict]:
    """Every pair of variants, p-values Holm-corrected over all of them, verdicts on the corrected p."""
    if test not in ("auto", "welch", "permutation"):
        raise UserError(f"test must be auto, welch or permutation, not {test!r}")
    per_run = run_values(df, metric, use, runs)
    groups = {v: g["value"].to_numpy() for v, g in per_run.groupby("variant", sort=False)}
    hib = higher_is_better(metric)
    comps = [compare_pair(a, groups[a], b, groups[b], hib, alpha, test) for a, b in itertools.combinations(groups, 2)]
    for c, adj in zip(comps, S.holm([c["p_value"] for c in comps])):
        c["p_adjusted"] = adj
        c["verdict"] = _verdict(c, hib, alpha)
    return comps


def pair_table(comps: list[dict]) -> pd.DataFrame:
    """comparisons() as a flat table: the page's pair table and its CSV."""
    rows = [{**{k: v for k, v in c.items() if k != "diff_ci95"}, "diff_lo": (c["diff_ci95"] or (None, None))[0],
             "diff_hi": (c["diff_ci95"] or (None, None))[1]} for c in comps]
    # None (JSON's NaN) back to NaN so the columns stay numeric.
    out = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    num = [c for c in PAIR_COLUMNS if c not in ("a", "b", "verdict", "test", "seeds_needed")]
    out[num] = out[num].apply(pd.to_numeric, errors="coerce")
    out["seeds_needed"] = out["seeds_needed"].astype("Int64")
    return out


def summarize(df: pd.DataFrame, metric: str | None = None, use: str = "final", runs=None,
              alpha: float = 0.05, test: str = "auto") -> dict:
    """The JSON-ready summary the CLI prints and the page exports:
    {metric, metric_reason, use, alpha, test, ci_method, power_method, higher_is_better,
     runs: [{name, variant, seed, metrics: {KEY: {final, best, n_points}}}],
     variants: [{variant, n, mean, std, ci95, iqm, iqm_ci95}],
     comparisons: [{a, b, n_a, n_b, diff, diff_ci95, p_value, p_adjusted, verdict, test,
                    prob_improvement, mde, seeds_needed}],
     summary: one plain paragraph}.
    NaN (undefined, e.g. the std of one run) becomes None."""
    a = _assignments(df, runs)
    if metric:
        metric, reason = pick_metric(df, metric), f"{metric}: chosen by the user"
    else:
        metric, reason = choose_metric(df, a)
    m = run_metrics(df)
    runs_out = []
    for r in a.itertuples(index=False):
        mm = m[m["run"] == r.run]
        seed = None if r.seed is None or pd.isna(r.seed) else int(r.seed)  # a column with None turns float
        runs_out.append({"name": r.run, "variant": r.variant, "seed": seed, "metrics": {
            k.key: {"final": _num(k.final), "best": _num(k.best), "n_points": int(k.n_points)}
            for k in mm.itertuples(index=False)}})
    vt = variant_table(df, metric, use, a)
    comps = comparisons(df, metric, use, a, alpha, test)
    tests = sorted({c["test"] for c in comps if c["test"]})
    out = {
        "metric": metric, "metric_reason": reason, "use": use, "alpha": alpha,
        "test": test if test != "auto" else ("auto: " + ", ".join(tests) if tests else "auto"),
        "ci_method": f"percentile bootstrap, {S.N_BOOT} resamples, seed 0",
        "power_method": f"two-sample t-test, alpha {alpha:g}, power {S.POWER:g}, pooled std",
        "higher_is_better": higher_is_better(metric),
        "runs": runs_out,
        "variants": [_clean({**{k: v for k, v in r.items() if k not in ("iqm_lo", "iqm_hi")},
                             "iqm_ci95": (r["iqm_lo"], r["iqm_hi"])}) for r in vt.to_dict("records")],
        "comparisons": [_clean(c) for c in comps],
    }
    out["summary"] = plain_summary(out)
    return out


def _clean(d: dict) -> dict:
    """JSON-ready: numpy scalars to Python, NaN to None, an interval of NaNs to None."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (tuple, list)):
            v = [_num(x) for x in v]
            v = None if all(x is None for x in v) else v
        elif isinstance(v, (bool, str)) or v is None:
            pass
        elif isinstance(v, (int, np.integer)):
            v = int(v)
        elif isinstance(v, (float, np.floating)):
            v = _num(v)
        out[k] = v
    return out


def _num(v):
    v = float(v)
    return v if math.isfinite(v) else None


def _scale(summary: dict) -> tuple[float, str]:
    """Accuracy-like fractions read as percentage points ("1.8 points"); anything else in its units."""
    vals = [r["metrics"].get(summary["metric"], {}).get(summary["use"]) for r in summary["runs"]]
    vals = [v for v in vals if v is not None]
    if vals and _ACC_LIKE.search(summary["metric"]) and all(0 <= v <= 1 for v in vals):
        return 100.0, " points"
    return 1.0, ""


def plain_summary(summary: dict) -> str:
    """One plain paragraph: who beats whom by how much (CI, Holm p), what is within noise, and how
    many seeds would settle the largest unsettled gap."""
    comps, metric = summary["comparisons"], summary["metric"]
    k, unit = _scale(summary)
    num = (lambda v: f"{v:.1f}") if unit else (lambda v: f"{v:.3g}")  # noqa: E731
    g = lambda v: num(abs(v) * k)  # noqa: E731
    # Only the runs that log the metric: the count and the variants then describe the same runs.
    n_runs, n_vars = sum(int(v.get("n") or 0) for v in summary["variants"]), len(summary["variants"])
    head = (f"On the {summary['use']} {metric} of {n_runs} runs in {n_vars} variants "
            f"({'higher' if summary['higher_is_better'] else 'lower'} is better)")
    if n_vars < 2:
        return head + ": there is only one variant, so nothing to compare; give the runs different variants."
    parts = []
    for c in sorted((c for c in comps if c["verdict"] != WITHIN_NOISE), key=lambda c: c["p_adjusted"]):
        win, lose = (c["a"], c["b"]) if c["verdict"] == c["a"] else (c["b"], c["a"])
        sign = 1 if win == c["a"] else -1
        lo, hi = sorted(sign * x for x in c["diff_ci95"]) if c["diff_ci95"] else (math.nan, math.nan)
        parts.append(f"{win} beats {lose} by {g(c['diff'])}{unit} (95% CI {num(lo * k)} to {num(hi * k)}, "
                     f"Holm p {c['p_adjusted']:.2g})")
    noise = [c for c in comps if c["verdict"] == WITHIN_NOISE and c["p_value"] is not None]
    untested = [c for c in comps if c["p_value"] is None]
    if noise:
        names = "; ".join(f"{c['a']} vs {c['b']}" for c in noise) if len(noise) <= 3 else None
        if not parts:
            parts.append(f"no pair differs beyond seed noise (smallest Holm p {min(c['p_adjusted'] for c in noise):.2g})")
        elif names:
            parts.append(f"{names} {'is' if len(noise) == 1 else 'are'} within noise")
        else:
            parts.append(f"the other {len(noise)} pairs are within noise")
    if untested:
        names = "; ".join(f"{c['a']} vs {c['b']}" for c in untested) if len(untested) <= 3 else f"{len(untested)} pairs"
        parts.append(f"{names} could not be tested (one run on each side gives no p-value; add seeds)")
    # Seeds worth asking for: a gap these seeds could not detect (more needed than there are).
    settle = [c for c in noise if c["seeds_needed"] is not None and c["seeds_needed"] > max(c["n_a"], c["n_b"])]
    if settle:
        c = max(settle, key=lambda c: abs(c["diff"]))
        parts.append(f"about {c['seeds_needed']} seeds per variant would detect the {g(c['diff'])}{unit} gap between "
                     f"{c['a']} and {c['b']} at 80% power"
                     + (f" (with {c['n_a']} and {c['n_b']} seeds the smallest detectable gap is {g(c['mde'])}{unit})"
                        if c["mde"] is not None else ""))
    corrected = [c for c in noise if c["p_value"] < summary["alpha"]]
    if corrected:
        parts.append(f"{len(corrected)} of the pairs within noise have p < {summary['alpha']:g} before Holm's "
                     f"correction for {len(comps)} pairs")
    return head + ": " + "; ".join(parts) + "."


def summary_markdown(summary: dict) -> str:
    """The summary paragraph, the pair table and the variant table as Markdown (the page's export)."""
    f = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"# {summary['use']} {summary['metric']}", "", summary["summary"], "",
             f"Metric: {summary['metric_reason']}. Test: {summary['test']}; p adjusted by Holm over "
             f"{len(summary['comparisons'])} pairs; CIs: {summary['ci_method']}; power: {summary['power_method']}.", "",
             "| A | B | diff | 95% CI | p | Holm p | verdict | P(A beats B) | MDE | seeds needed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in summary["comparisons"]:
        ci = f"{c['diff_ci95'][0]:.4g} to {c['diff_ci95'][1]:.4g}" if c["diff_ci95"] else ""
        lines.append(f"| {c['a']} | {c['b']} | {f(c['diff'])} | {ci} | {f(c['p_value'])} | {f(c['p_adjusted'])} | "
                     f"{c['verdict']} | {f(c['prob_improvement'])} | {f(c['mde'])} | {f(c['seeds_needed'])} |")
    lines += ["", "| variant | n | mean | std | 95% CI ± | IQM | IQM 95% CI |", "|---|---|---|---|---|---|---|"]
    for v in summary["variants"]:
        iqm_ci = f"{v['iqm_ci95'][0]:.4g} to {v['iqm_ci95'][1]:.4g}" if v["iqm_ci95"] else ""
        lines.append(f"| {v['variant']} | {v['n']} | {f(v['mean'])} | {f(v['std'])} | {f(v['ci95'])} | "
                     f"{f(v['iqm'])} | {iqm_ci} |")
    return "\n".join(lines) + "\n"
