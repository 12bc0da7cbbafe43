"""Each figure of the pair statistics against scipy, a published table or a hand computation."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from actlab.analysis import stats as S
from actlab.analysis.compare import choose_metric, compare_pair, comparisons, pair_table, summarize, summary_markdown


def test_holm_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, but never below the one before: 0.06)
    assert S.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # NaN is not a test: m = 2 here
    out = S.holm([0.02, math.nan, 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)
    assert S.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1


def test_bootstrap_diff_ci_by_hand_and_against_scipy():
    # a = [0, 1], b = [0]: the resampled mean of a is 0, 0.5 or 1 (1/4, 1/2, 1/4), so the 2.5th and
    # 97.5th percentiles of 10k resamples are 0 and 1.
    assert S.bootstrap_diff_ci([0.0, 1.0], [0.0]) == (0.0, 1.0)
    a = np.array([0.71, 0.74, 0.78, 0.80, 0.83])
    b = np.array([0.65, 0.69, 0.70, 0.74, 0.77])
    lo, hi = S.bootstrap_diff_ci(a, b)
    assert (lo, hi) == S.bootstrap_diff_ci(a, b)  # seeded
    ref = stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), method="percentile",
                          n_resamples=10_000, random_state=1, vectorized=True).confidence_interval
    # different random draws: the two Monte Carlo estimates agree to within their noise
    assert lo == pytest.approx(ref.low, abs=0.004) and hi == pytest.approx(ref.high, abs=0.004)
    assert lo < a.mean() - b.mean() < hi


def test_prob_improvement_is_mann_whitney_u_over_nm():
    a, b = [0.8, 0.7, 0.9, 0.7], [0.7, 0.6, 0.75]  # a tie at 0.7 counts half
    u = stats.mannwhitneyu(a, b).statistic
    assert S.prob_improvement(a, b) == pytest.approx(u / 12)
    # by hand: 0.8 beats 3, 0.7 beats 1 and ties 1 (twice), 0.9 beats 3 -> (3 + 1.5 + 3 + 1.5) / 12
    assert S.prob_improvement(a, b) == pytest.approx(9 / 12)
    assert S.prob_improvement(a, b, higher_better=False) == pytest.approx(3 / 12)  # lower wins for a loss


def test_power_mde_and_seeds_against_published_tables():
    # Cohen (1988), table 2.4.1, two-sided alpha 0.05: d = 0.5 needs 64 per group, d = 0.8 needs 26;
    # G*Power gives power 0.8015 for d = 0.5 at 64 per group, and d = 0.909 detectable at 20 per group.
    assert S.t_test_power(0.5, 64, 64) == pytest.approx(0.8015, abs=1e-4)
    assert S.seeds_needed(0.5, 1.0) == 64 and S.seeds_needed(0.8, 1.0) == 26
    assert S.seeds_needed(-0.04, 0.08) == 64  # only |diff| / std matters
    assert S.mde(20, 20, 1.0) == pytest.approx(0.9091, abs=1e-3)
    assert S.mde(20, 20, 0.02) == pytest.approx(0.9091 * 0.02, abs=2e-5)  # in the metric's units
    assert S.seeds_needed(0.0, 1.0) is None and math.isnan(S.mde(1, 1, 1.0))


def test_power_fallback_agrees_with_noncentral_t():
    # 1 dof: scipy's nct can return NaN; the chi-square integral takes over. Where both work they agree.
    dof_ok = S.t_test_power(2.0, 4, 3)
    crit = stats.t.ppf(0.975, 5)
    nc = 2.0 / math.sqrt(1 / 4 + 1 / 3)
    assert dof_ok == pytest.approx(stats.nct.sf(crit, 5, nc) + stats.nct.cdf(-crit, 5, nc))
    p = S.t_test_power(12.0, 2, 1)
    assert 0 < p < 1 and math.isfinite(S.mde(2, 1, 0.07))


def test_pooled_std_by_hand():
    # sums of squares 2 and 8 over 3 + 3 - 2 dof -> sqrt(10 / 4)
    assert S.pooled_std([1.0, 2.0, 3.0], [4.0, 6.0, 8.0]) == pytest.approx(math.sqrt(10 / 4))


def test_iqm_and_its_interval():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]
    assert S.iqm(x) == pytest.approx(4.5)  # mean of 3, 4, 5, 6: the outlier is trimmed
    assert S.iqm(x) == pytest.approx(stats.trim_mean(x, 0.25))
    # exact bootstrap distribution for 4 runs: all 4^4 resamples are equally likely
    y = np.array([0.70, 0.72, 0.75, 0.81])
    exact = np.array([stats.trim_mean(y[list(i)], 0.25) for i in itertools.product(range(4), repeat=4)])
    lo, hi = S.bootstrap_ci(y)
    assert lo == pytest.approx(np.percentile(exact, 2.5), abs=0.006)
    assert hi == pytest.approx(np.percentile(exact, 97.5), abs=0.006)


def finals(values_by_run, key="acc"):
    return pd.DataFrame([(r, 1, 1.0, key, v, np.nan) for r, v in values_by_run.items()],
                        columns=["run", "step", "epoch", "key", "value", "wall_time"])


def test_verdict_follows_holm_not_the_raw_p():
    # Three variants, 3 pairs: a vs c has raw Welch p < 0.05 but Holm's x3 lifts it over 0.05.
    df = finals({"a_seed1": 0.70, "a_seed2": 0.72, "a_seed3": 0.74,
                 "b_seed1": 0.69, "b_seed2": 0.71, "b_seed3": 0.73,
                 "c_seed1": 0.66, "c_seed2": 0.675, "c_seed3": 0.69})
    comps = {(c["a"], c["b"]): c for c in comparisons(df, "acc", test="welch")}
    ac = comps[("a", "c")]
    assert ac["p_value"] == pytest.approx(stats.ttest_ind([0.70, 0.72, 0.74], [0.66, 0.675, 0.69], equal_var=False).pvalue)
    raw = [c["p_value"] for c in comps.values()]
    assert [c["p_adjusted"] for c in comps.values()] == pytest.approx(S.holm(raw))
    assert ac["p_value"] < 0.05 < ac["p_adjusted"] and ac["verdict"] == "within noise"
    assert compare_pair("a", [0.70, 0.72, 0.74], "c", [0.66, 0.675, 0.69], test="welch")["verdict"] == "a"


def test_pair_fields_and_plain_summary():
    df = finals({**{f"with_relu_seed{i}": v for i, v in enumerate((0.712, 0.716, 0.708, 0.714), 1)},
                 **{f"without_relu_seed{i}": v for i, v in enumerate((0.690, 0.694, 0.689, 0.697), 1)}}, key="top1_acc")
    out = summarize(df)
    (c,) = out["comparisons"]
    a, b = np.array([0.712, 0.716, 0.708, 0.714]), np.array([0.690, 0.694, 0.689, 0.697])
    assert c["diff"] == pytest.approx(a.mean() - b.mean())
    assert c["diff_ci95"] == pytest.approx(list(S.bootstrap_diff_ci(a, b)))
    assert c["prob_improvement"] == 1.0
    sd = math.sqrt((a.var(ddof=1) * 3 + b.var(ddof=1) * 3) / 6)
    assert c["mde"] == pytest.approx(S.mde(4, 4, sd))
    assert c["seeds_needed"] == S.seeds_needed(a.mean() - b.mean(), sd)
    v = out["variants"][0]
    assert v["iqm"] == pytest.approx(stats.trim_mean(a, 0.25)) and v["iqm_ci95"][0] <= v["iqm"] <= v["iqm_ci95"][1]
    text = out["summary"]
    assert text.startswith("On the final top1_acc of 8 runs in 2 variants (higher is better): with_relu beats without_relu by 2.0 points")
    assert f"Holm p {c['p_adjusted']:.2g}" in text
    md = summary_markdown(out)
    assert text in md and "| with_relu | without_relu |" in md
    t = pair_table(out["comparisons"])
    assert t.loc[0, "diff_lo"] == pytest.approx(c["diff_ci95"][0]) and t.loc[0, "verdict"] == "with_relu"


def test_summary_says_how_many_seeds_for_an_unsettled_gap():
    df = finals({"x_seed1": 0.70, "x_seed2": 0.74, "x_seed3": 0.72, "y_seed1": 0.71, "y_seed2": 0.69, "y_seed3": 0.73})
    out = summarize(df, "acc")
    (c,) = out["comparisons"]
    # diff 0.01 with a pooled std of 0.02: an effect of 0.5, which takes 64 seeds a side (Cohen)
    assert c["verdict"] == "within noise" and c["seeds_needed"] == 64
    assert "about 64 seeds per variant would detect the 1.0 points gap between x and y" in out["summary"]


def test_default_metric_is_the_shared_accuracy_key_and_says_why():
    rows = [("mnist", 1, 1.0, "test/acc", 0.97, np.nan), ("mnist", 1, 1.0, "loss", 0.1, np.nan)]
    for v in ("relu", "gelu"):
        for s in (1, 2, 3):
            for step in (1, 2):
                rows += [(f"{v}_seed{s}", step, step, k, 0.5, np.nan) for k in ("loss", "top1_acc", "top5_acc", "acc/train")]
    df = pd.DataFrame(rows, columns=["run", "step", "epoch", "key", "value", "wall_time"])
    key, why = choose_metric(df)
    assert key == "top1_acc"
    assert why.startswith("top1_acc: logged by 6 of 7 runs in 2 variants; chosen over top5_acc because it is top-1")
    # a key one variant logs never wins over one two variants share
    solo = df[~((df["key"] == "top1_acc") & df["run"].str.startswith("gelu"))]
    assert choose_metric(solo)[0] == "top5_acc"
