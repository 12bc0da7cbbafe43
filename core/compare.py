"""Ablation statistics over the tidy scalar table: is a variant's difference larger than seed noise?

Per run: `final` (value at the last step), `best` (max for accuracy-like keys, min for loss-like),
`n_points`. Per variant: `n`, `mean`, `std` (sample, ddof=1), `ci95` (half-width, Student t).
Pairwise: `diff` = mean(a) - mean(b), `p_value` from Welch's t-test, or an exact/Monte-Carlo
permutation test when a side has fewer than 3 runs or no spread (Welch's t is undefined or
unreliable there), and `verdict`: "within noise" unless p < alpha, then the better variant's name.
"""
from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
from scipy import stats

from core import UserError
from core.logs.names import infer_variant_seed

WITHIN_NOISE = "within noise"
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


def pick_metric(df: pd.DataFrame, metric: str | None = None) -> str:
    keys = list(dict.fromkeys(df["key"].tolist()))
    if not keys:
        raise UserError("no scalar values to compare")
    if metric:
        if metric not in keys:
            raise UserError(f"metric {metric!r} not found; keys: {', '.join(sorted(keys)[:20])}")
        return metric
    runs = df["run"].nunique()
    shared = [k for k in keys if df.loc[df["key"] == k, "run"].nunique() == runs] or keys
    acc = [k for k in shared if _ACC_LIKE.search(k) and higher_is_better(k)]
    return (acc or shared)[0]


def ci95(values) -> float:
    x = np.asarray(values, float)
    n = len(x)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))


def describe(values) -> dict:
    x = np.asarray(values, float)
    n = len(x)
    return {"n": n, "mean": float(x.mean()) if n else math.nan,
            "std": float(x.std(ddof=1)) if n > 1 else math.nan, "ci95": ci95(x)}


def welch_p(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def permutation_p(a, b, n_resamples: int = 20000, seed: int = 0) -> float:
    """Two-sided permutation test on the difference of means: exact (every split of the pooled runs)
    when there are at most n_resamples splits, else Monte Carlo. Written out because scipy's
    permutation_test refuses a group of one run, which is common in a first ablation."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled, na = np.concatenate([a, b]), len(a)
    n, total = len(pooled), pooled.sum()
    observed = abs(a.mean() - b.mean())
    if math.comb(n, na) <= n_resamples:
        idx = np.array(list(itertools.combinations(range(n), na)), dtype=np.int64)
        sa = pooled[idx].sum(axis=1)
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((n_resamples, n)), axis=1)[:, :na]
        sa = pooled[idx].sum(axis=1)
    diffs = np.abs(sa / na - (total - sa) / (n - na))
    # A relative tolerance so float round-off does not drop the observed split itself.
    extreme = diffs >= observed - 1e-12 * max(1.0, abs(observed))
    if math.comb(n, na) <= n_resamples:
        return float(extreme.mean())
    return float((extreme.sum() + 1) / (n_resamples + 1))


def compare_pair(a_name: str, a, b_name: str, b, higher_better: bool = True, alpha: float = 0.05,
                 test: str = "auto") -> dict:
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    p, used = math.nan, test
    if len(a) + len(b) >= 3 and len(a) and len(b):
        degenerate = min(len(a), len(b)) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0
        used = "permutation" if test == "permutation" or (test == "auto" and degenerate) else "welch"
        if used == "welch" and min(len(a), len(b)) < 2:
            used = "permutation"
        p = welch_p(a, b) if used == "welch" else permutation_p(a, b)
    verdict = WITHIN_NOISE
    if math.isfinite(p) and p < alpha and diff != 0:
        verdict = a_name if (diff > 0) == higher_better else b_name
    return {"a": a_name, "b": b_name, "diff": diff, "p_value": p, "verdict": verdict, "test": used}


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
    """Per variant: n, mean, std, ci95 of each run's final (or best) value of `metric`."""
    per_run = run_values(df, metric, use, runs)
    rows = []
    for v, g in per_run.groupby("variant", sort=False):
        rows.append({"variant": v, **describe(g["value"].to_numpy())})
    return pd.DataFrame(rows, columns=["variant", "n", "mean", "std", "ci95"])


def run_values(df: pd.DataFrame, metric: str, use: str = "final", runs=None) -> pd.DataFrame:
    if use not in ("final", "best"):
        raise UserError(f"use must be 'final' or 'best', not {use!r}")
    m = run_metrics(df, [metric])
    a = _assignments(df, runs)
    out = a.merge(m, on="run", how="inner")
    return out.assign(value=out[use])[["run", "variant", "seed", "value", "final", "best", "n_points"]]


def comparisons(df: pd.DataFrame, metric: str, use: str = "final", runs=None, alpha: float = 0.05,
                test: str = "auto") -> list[dict]:
    if test not in ("auto", "welch", "permutation"):
        raise UserError(f"test must be auto, welch or permutation, not {test!r}")
    per_run = run_values(df, metric, use, runs)
    groups = {v: g["value"].to_numpy() for v, g in per_run.groupby("variant", sort=False)}
    hib = higher_is_better(metric)
    return [compare_pair(a, groups[a], b, groups[b], hib, alpha, test) for a, b in itertools.combinations(groups, 2)]


def summarize(df: pd.DataFrame, metric: str | None = None, use: str = "final", runs=None,
              alpha: float = 0.05, test: str = "auto") -> dict:
    """The JSON-ready summary the CLI prints and the ablation runner calls:
    {metric, use, test, alpha, runs: [{name, variant, seed, metrics: {KEY: {final, best, n_points}}}],
     variants: [{variant, n, mean, std, ci95}], comparisons: [{a, b, diff, p_value, verdict}]}.
    NaN (undefined, e.g. the std of one run) becomes None."""
    metric = pick_metric(df, metric)
    a = _assignments(df, runs)
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
    tests = sorted({c.pop("test") for c in comps})
    return {
        "metric": metric, "use": use, "alpha": alpha, "test": test if test != "auto" else ("auto: " + ", ".join(tests) if tests else "auto"),
        "higher_is_better": higher_is_better(metric),
        "runs": runs_out,
        "variants": [{"variant": r.variant, "n": int(r.n), "mean": _num(r.mean), "std": _num(r.std), "ci95": _num(r.ci95)}
                     for r in vt.itertuples(index=False)],
        "comparisons": [{k: (_num(v) if isinstance(v, float) else v) for k, v in c.items()} for c in comps],
    }


def _num(v):
    v = float(v)
    return v if math.isfinite(v) else None

