"""Seed statistics on small samples: tests, multiple-comparison correction, bootstrap intervals,
probability of improvement, power. Pure functions of arrays of per-run values; no tables here.

The reviewer's questions each have one function:
  is the gap real?                      welch_p / permutation_p, then holm over all pairs
  how big, give or take?                bootstrap_diff_ci (percentile bootstrap, seeded)
  how often does a run of A beat B?     prob_improvement (Mann-Whitney estimate, as in rliable)
  what could these seeds have seen?     mde (two-sample t-test, alpha 0.05, power 0.8)
  how many seeds would settle it?       seeds_needed
  a robust centre for >= 4 runs         iqm with bootstrap_ci
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import integrate, optimize, stats

N_BOOT = 10_000
POWER = 0.8
MAX_SEEDS = 100_000  # beyond this "seeds needed" is not a plan, so it is reported as None


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
    exact = math.comb(n, na) <= n_resamples
    if exact:
        idx = np.array(list(itertools.combinations(range(n), na)), dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((n_resamples, n)), axis=1)[:, :na]
    sa = pooled[idx].sum(axis=1)
    diffs = np.abs(sa / na - (total - sa) / (n - na))
    # A relative tolerance so float round-off does not drop the observed split itself.
    extreme = diffs >= observed - 1e-12 * max(1.0, abs(observed))
    return float(extreme.mean()) if exact else float((extreme.sum() + 1) / (n_resamples + 1))


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order. NaN (no test) stays NaN and does not
    count towards the number of tests."""
    p = np.asarray(p_values, float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _resample_means(x: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    return x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)


def bootstrap_diff_ci(a, b, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), each group resampled on its own.
    Percentile rather than BCa: BCa's jackknife acceleration is undefined or wild with 2-3 seeds."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 1 or len(b) < 1 or len(a) + len(b) < 3:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    d = _resample_means(a, rng, n_boot) - _resample_means(b, rng, n_boot)
    lo, hi = np.percentile(d, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def iqm(x) -> float:
    """Interquartile mean: the mean of the middle 50% of runs (scipy's trim_mean at 0.25, as rliable)."""
    x = np.asarray(x, float)
    return float(stats.trim_mean(x, 0.25)) if len(x) else math.nan


def bootstrap_ci(x, statistic=iqm, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(x) (default: the IQM)."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, len(x), (n_boot, len(x)))]
    if statistic is iqm:
        vals = stats.trim_mean(samples, 0.25, axis=1)
    else:
        vals = np.apply_along_axis(statistic, 1, samples)
    lo, hi = np.percentile(vals, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def prob_improvement(a, b, higher_better: bool = True) -> float:
    """P(a run of A beats a run of B), ties counted half: the Mann-Whitney U of A over B divided by
    n_A * n_B, which is rliable's probability of improvement for one task."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or not len(b):
        return math.nan
    d = a[:, None] - b[None, :]
    if not higher_better:
        d = -d
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def pooled_std(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    dof = len(a) + len(b) - 2
    if dof < 1:
        return math.nan
    ss = (len(a) - 1) * (a.var(ddof=1) if len(a) > 1 else 0.0) + (len(b) - 1) * (b.var(ddof=1) if len(b) > 1 else 0.0)
    return math.sqrt(ss / dof)


def t_test_power(effect: float, n_a: float, n_b: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test (equal variances) for a standardized effect
    (difference / pooled std), from the noncentral t distribution."""
    dof = n_a + n_b - 2
    if dof < 1:
        return math.nan
    nc = abs(effect) / math.sqrt(1 / n_a + 1 / n_b)
    crit = stats.t.ppf(1 - alpha / 2, dof)
    power = float(stats.nct.sf(crit, dof, nc) + stats.nct.cdf(-crit, dof, nc))
    if not math.isfinite(power):
        # scipy's nct is NaN in parts of the 1-2 dof range: integrate over the chi-square instead,
        # P(|Z + nc| > crit * sqrt(V / dof)) with V ~ chi2(dof).
        def tail(v):
            c = crit * math.sqrt(v / dof)
            return (stats.norm.sf(c - nc) + stats.norm.cdf(-c - nc)) * stats.chi2.pdf(v, dof)
        power = float(integrate.quad(tail, 0, math.inf, limit=200)[0])
    return power


def mde(n_a: int, n_b: int, std: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest true difference that these group sizes detect with the given power at alpha,
    given a pooled std: solves t_test_power(d / std, n_a, n_b) = power for d."""
    if not (math.isfinite(std) and std > 0) or n_a + n_b - 2 < 1 or min(n_a, n_b) < 1:
        return math.nan
    hi = 1.0
    while t_test_power(hi, n_a, n_b, alpha) < power:
        hi *= 2
        if hi > 1e6:
            return math.nan
    return float(optimize.brentq(lambda e: t_test_power(e, n_a, n_b, alpha) - power, 0.0, hi, xtol=1e-10) * std)


def seeds_needed(diff: float, std: float, alpha: float = 0.05, power: float = POWER) -> int | None:
    """Runs per variant (equal groups) for the t-test to detect `diff` with the given power."""
    if not (math.isfinite(diff) and math.isfinite(std)) or diff == 0:
        return None
    if std == 0:
        return 2  # no spread at all: two runs a side already separate any gap
    effect = abs(diff) / std
    lo, hi = 2, 2
    while t_test_power(effect, hi, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None
    while lo < hi:  # power grows with n: the first n that reaches it
        mid = (lo + hi) // 2
        if t_test_power(effect, mid, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return int(hi)
