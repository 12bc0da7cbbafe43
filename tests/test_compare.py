"""Ablation statistics against values worked out by hand, and the CLI's JSON shape."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from actlab import UserError
from actlab.cli import main
from actlab.analysis.compare import compare_pair, higher_is_better, run_metrics, summarize, variant_table
from actlab.analysis.stats import permutation_p
from actlab.dashboard.charts.smoothing import ema

FIX = Path(__file__).parent / "fixtures" / "logs"
PAIR_FIELDS = {"a", "b", "n_a", "n_b", "diff", "diff_ci95", "p_value", "p_adjusted", "verdict", "test",
               "prob_improvement", "mde", "seeds_needed"}
T_975_DF2 = 4.302652729911275  # Student t 97.5% quantile, 2 degrees of freedom (from a t table)


def scalars(rows):
    return pd.DataFrame(rows, columns=["run", "step", "epoch", "key", "value", "wall_time"])


def finals(values_by_run, key="acc"):
    """One point per run at step 1: final == best == the value."""
    return scalars([(r, 1, 1.0, key, v, np.nan) for r, v in values_by_run.items()])


def welch_p_df4(t):
    """Two-sided p of Student t with 4 dof, closed form: F(t) = 1/2 + 3/8 u (1 - t^2 / (12 (1 + t^2/4))),
    u = t / sqrt(1 + t^2/4)."""
    u = t / math.sqrt(1 + t * t / 4)
    return 2 * (1 - (0.5 + 0.375 * u * (1 - t * t / (12 * (1 + t * t / 4)))))


def test_run_metrics_final_best_direction_and_points():
    df = scalars([
        ("r", 1, 1, "acc", 0.3, 0), ("r", 2, 2, "acc", 0.5, 0), ("r", 3, 3, "acc", 0.4, 0),
        ("r", 1, 1, "loss", 0.9, 0), ("r", 2, 2, "loss", 0.41, 0), ("r", 3, 3, "loss", 0.6, 0),
        ("r", 4, 4, "loss", np.nan, 0)])
    m = run_metrics(df).set_index("key")
    assert m.loc["acc", ["final", "best", "n_points"]].tolist() == [0.4, 0.5, 3]
    assert m.loc["loss", ["final", "best", "n_points"]].tolist() == [0.6, 0.41, 3]  # NaN step is no point


def test_direction_of_keys():
    assert higher_is_better("acc/top1") and higher_is_better("mrr")
    assert not higher_is_better("loss/train") and not higher_is_better("dead/fc1")


def test_variant_table_mean_std_ci95():
    df = finals({"a_seed1": 1.0, "a_seed2": 2.0, "a_seed3": 3.0, "b_seed1": 5.0})
    t = variant_table(df, "acc").set_index("variant")
    assert t.loc["a", "n"] == 3 and t.loc["a", "mean"] == 2.0 and t.loc["a", "std"] == 1.0
    assert t.loc["a", "ci95"] == pytest.approx(T_975_DF2 / math.sqrt(3))  # 2.48414
    assert t.loc["b", "n"] == 1 and math.isnan(t.loc["b", "std"]) and math.isnan(t.loc["b", "ci95"])


def test_welch_against_hand_computed_value_and_verdict_direction():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    # t = (2 - 5) / sqrt(1/3 + 1/3) = -3.6742; Welch-Satterthwaite dof = (2/3)^2 / (2 * (1/3)^2 / 2) = 4
    expected_p = welch_p_df4(3 / math.sqrt(2 / 3))
    assert expected_p == pytest.approx(0.021312, abs=1e-6)
    acc = compare_pair("a", a, "b", b, higher_better=True)
    assert acc["test"] == "welch" and acc["diff"] == -3.0
    assert acc["p_value"] == pytest.approx(expected_p, rel=1e-9)
    assert acc["verdict"] == "b"
    loss = compare_pair("a", a, "b", b, higher_better=False)
    assert loss["verdict"] == "a"  # lower loss wins


def test_within_noise_when_p_above_alpha():
    r = compare_pair("x", [1.0, 2.0, 3.0], "y", [1.5, 2.5, 3.5])
    # t = -0.5 / sqrt(2/3) = -0.6124, dof 4
    assert r["p_value"] == pytest.approx(welch_p_df4(0.5 / math.sqrt(2 / 3)), rel=1e-9)
    assert r["verdict"] == "within noise"


def test_permutation_exact_for_tiny_groups():
    # [1,2] vs [3,4]: 6 equally likely splits, |diff of means| >= 2 in 2 of them -> p = 1/3
    r = compare_pair("a", [1.0, 2.0], "b", [3.0, 4.0])
    assert r["test"] == "permutation" and r["p_value"] == pytest.approx(1 / 3)
    assert r["verdict"] == "within noise"
    # 3 vs 3, fully separated: 2 of C(6,3) = 20 splits are as extreme -> p = 0.1
    assert permutation_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    # one run against two: splits {1}: |1 - 2.5|, {2}: 0, {3}: |3 - 1.5| -> 2 of 3 as extreme
    assert permutation_p([1.0], [2.0, 3.0]) == pytest.approx(2 / 3)


def test_one_run_per_side_is_never_a_verdict():
    r = compare_pair("a", [0.9], "b", [0.1])
    assert math.isnan(r["p_value"]) and r["verdict"] == "within noise"


def test_summarize_shape_and_values():
    df = finals({"relu_seed1": 1.0, "relu_seed2": 2.0, "relu_seed3": 3.0,
                 "gelu_seed1": 4.0, "gelu_seed2": 5.0, "gelu_seed3": 6.0}, key="acc/top1")
    out = summarize(df, "acc/top1", test="welch")
    assert [r["variant"] for r in out["runs"]] == ["relu"] * 3 + ["gelu"] * 3
    assert out["runs"][0] == {"name": "relu_seed1", "variant": "relu", "seed": 1,
                              "metrics": {"acc/top1": {"final": 1.0, "best": 1.0, "n_points": 1}}}
    assert out["variants"][1] == {"variant": "gelu", "n": 3, "mean": 5.0, "std": 1.0,
                                  "ci95": pytest.approx(T_975_DF2 / math.sqrt(3)), "iqm": None, "iqm_ci95": None}
    (c,) = out["comparisons"]
    assert set(c) == PAIR_FIELDS
    assert (c["a"], c["b"], c["diff"], c["verdict"]) == ("relu", "gelu", -3.0, "gelu")
    json.dumps(out)  # None, not NaN: valid JSON


def test_summarize_uses_given_assignments_and_best():
    df = scalars([("r1", 1, 1, "acc", 0.9, 0), ("r1", 2, 2, "acc", 0.1, 0),
                  ("r2", 1, 1, "acc", 0.8, 0), ("r2", 2, 2, "acc", 0.2, 0)])
    runs = pd.DataFrame({"run": ["r1", "r2"], "variant": ["v", "v"], "seed": [1, 2]})
    out = summarize(df, "acc", use="best", runs=runs)
    assert out["variants"] == [{"variant": "v", "n": 2, "mean": pytest.approx(0.85), "std": pytest.approx(math.sqrt(0.005)),
                                "ci95": pytest.approx(12.706204736174707 * math.sqrt(0.005) / math.sqrt(2)),
                                "iqm": None, "iqm_ci95": None}]
    with pytest.raises(UserError, match="metric 'nope' not found"):
        summarize(df, "nope")


def test_ema_debiased():
    # weight 0.5: first point equals the value, second = (0.25*1 + 0.5*3) / 0.75
    assert ema([1.0, 3.0], 0.5).tolist() == [1.0, pytest.approx(7 / 3)]
    assert ema([1.0, 3.0], 0.0).tolist() == [1.0, 3.0]


def _grid(tmp_path):
    for name in ("with_relu_seed1.log", "with_relu_seed2.log"):
        shutil.copy(FIX / name, tmp_path / name)
    for seed, shift in ((1, 0.3), (2, 0.31)):
        text = (FIX / "with_relu_seed1.log").read_text().replace("acc/top1=0.4000", f"acc/top1={0.4 + shift:.4f}")
        (tmp_path / f"without_relu_seed{seed}.log").write_text(text)
    (tmp_path / "broken.log").write_bytes(b"")


def test_cli_summarize_json(tmp_path, capsys):
    _grid(tmp_path)
    assert main(["logs", "summarize", str(tmp_path), "--metric", "acc/top1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"runs", "variants", "comparisons", "unparsed", "errors"} <= set(out)
    assert {r["name"] for r in out["runs"]} == {"with_relu_seed1", "with_relu_seed2", "without_relu_seed1", "without_relu_seed2"}
    r = next(r for r in out["runs"] if r["name"] == "with_relu_seed2")
    assert (r["variant"], r["seed"]) == ("with_relu", 2) and isinstance(r["seed"], int)
    assert r["metrics"]["acc/top1"] == {"final": 0.5, "best": 0.55, "n_points": 3}
    v = {v["variant"]: v for v in out["variants"]}
    assert set(v["with_relu"]) == {"variant", "n", "mean", "std", "ci95", "iqm", "iqm_ci95"}
    assert v["with_relu"]["mean"] == pytest.approx(0.45) and v["without_relu"]["mean"] == pytest.approx(0.705)
    (c,) = out["comparisons"]
    assert set(c) == PAIR_FIELDS
    assert c["p_value"] == pytest.approx(1 / 3)  # 2 vs 2 seeds: exact permutation test
    assert c["verdict"] == "within noise"
    assert out["errors"] == [{"file": "broken.log", "error": "empty file"}]


def test_cli_bad_path_is_one_line_exit_2(tmp_path, capsys):
    assert main(["logs", "summarize", str(tmp_path / "missing.log"), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such file or directory:") and err.count("\n") == 1


def test_cli_regex_override(tmp_path, capsys):
    (tmp_path / "a_seed1.log").write_text("iter 1 got 50%\niter 2 got 75%\n")
    assert main(["logs", "summarize", str(tmp_path / "a_seed1.log"), "--regex",
                 r"iter (?P<step>\d+) got (?P<acc>\S+)", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"][0]["metrics"]["acc"] == {"final": 0.75, "best": 0.75, "n_points": 2}
    assert out["percent_keys"] == ["acc"]
