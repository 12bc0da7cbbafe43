"""actlab.watcher.diagnosis: each rule fires on a constructed series and stays quiet on a healthy one; one
test reads a real (briefly trained) stress run."""
import math

import numpy as np
import pandas as pd
import pytest

from actlab.watcher.diagnosis import Alert, Rules, diagnose

MNIST_CFG = {"lr": 0.02, "init_bias": -1.0, "norm": "none", "activation": "relu", "init": "default",
             "optimizer": "adam", "log_every": 10}
RELU_LAYERS = {"act1": {"activation": "relu", "params": {}, "definition": "dead", "class": "ReLU"}}
GELU_LAYERS = {"act1": {"activation": "gelu", "params": {}, "definition": "dormant", "class": "GELU"}}


def frame(series: dict[str, list], every: int = 10) -> pd.DataFrame:
    """One row per key per flush, at steps every, 2*every, ... (a list's i-th value at flush i)."""
    rows = [{"run": "r", "step": (i + 1) * every, "epoch": 0.0, "key": k, "value": v, "wall_time": float(i)}
            for k, vals in series.items() for i, v in enumerate(vals)]
    return pd.DataFrame(rows, columns=["run", "step", "epoch", "key", "value", "wall_time"])


def kinds(alerts: list[Alert]) -> list[tuple[str, str | None]]:
    return [(a.kind, a.layer) for a in alerts]


# ---------------------------------------------------------------- dying_layer

def test_rising_dead_rate_fires_with_figures_and_negative_bias_first():
    df = frame({"dead/act1": [0.05, 0.41, 0.60, 0.78], "loss/train": [2.0, 1.5, 1.2, 1.0]})
    alerts = diagnose(df, MNIST_CFG, RELU_LAYERS)
    assert kinds(alerts) == [("dying_layer", "act1")]
    a = alerts[0]
    assert a.severity == "warning" and a.step == 40
    assert a.message == "act1: 78% of units dead and rising over the last 3 flushes (41% -> 78%)"
    assert a.causes[0] == "negative bias init (init_bias=-1.0) puts pre-activations left of the kink"
    assert a.causes[1] == "learning rate 0.02 is high for this init"
    assert "no normalisation" in a.causes[2] and len(a.causes) == 3  # the config settles all three
    assert a.activation == "relu" and a.explorer_url == "/explorer?act=relu"
    assert a.actions == [
        {"label": "Branch with recycling (ReDo)", "kind": "recycle", "overrides": {"recycle_every": 10}},
        {"label": "Branch with LeakyReLU", "kind": "activation", "overrides": {"activation": "leaky_relu"}},
        {"label": "Branch with half the learning rate", "kind": "lr", "overrides": {"lr": 0.01}},
    ]


def test_dying_layer_without_config_lists_generic_causes_and_no_lr_branch():
    df = frame({"dead/act1": [0.5, 0.6, 0.7]})
    (a,) = diagnose(df)  # a user's watch() run: no config, no layer table
    assert a.kind == "dying_layer" and a.activation is None and a.explorer_url is None
    assert len(a.causes) == 3 and not any("init_bias=" in c for c in a.causes)
    assert [x["kind"] for x in a.actions] == ["recycle", "activation"]
    assert a.actions[0]["overrides"] == {"recycle_every": 100}


def test_config_specific_causes_rank_before_generic_ones():
    # init_bias=0 rules the bias out; lr says nothing (absent); norm='none' points at normalisation.
    (a,) = diagnose(frame({"dead/act1": [0.4, 0.5, 0.6]}), {"init_bias": 0.0, "norm": "none"}, RELU_LAYERS)
    assert a.causes[0] == "no normalisation before the activation (norm='none')"
    assert len(a.causes) == 2 and "learning rate too high" in a.causes[1]
    assert not any("bias" in c for c in a.causes)


@pytest.mark.parametrize("values", [
    [0.80, 0.78, 0.70],        # falling
    [0.60, 0.60, 0.60],        # flat: no net rise
    [0.50, 0.70, 0.69],        # last step down
    [0.60, 0.605, 0.61],       # rising, but less than min_rise
])
def test_falling_or_flat_dead_rate_does_not_fire(values):
    assert diagnose(frame({"dead/act1": [0.1] + values}), MNIST_CFG, RELU_LAYERS) == []


def test_rise_only_within_tolerance_counts_as_non_decreasing():
    alerts = diagnose(frame({"dead/act1": [0.40, 0.50 + 1e-12, 0.50, 0.70]}), MNIST_CFG, RELU_LAYERS)
    assert kinds(alerts) == [("dying_layer", "act1")]


def test_below_threshold_does_not_fire_and_threshold_is_a_rule():
    df = frame({"dead/act1": [0.10, 0.20, 0.29]})
    assert diagnose(df, MNIST_CFG, RELU_LAYERS) == []
    (a,) = diagnose(df, MNIST_CFG, RELU_LAYERS, rules=Rules(dead_threshold=0.25))
    assert a.message.endswith("(10% -> 29%)")


def test_fewer_than_k_flushes_does_not_fire():
    assert diagnose(frame({"dead/act1": [0.5, 0.9]}), MNIST_CFG, RELU_LAYERS) == []
    (a,) = diagnose(frame({"dead/act1": [0.5, 0.9]}), MNIST_CFG, RELU_LAYERS, rules=Rules(rising_flushes=2))
    assert "over the last 2 flushes (50% -> 90%)" in a.message


def test_gelu_dormant_rising_fires_with_dormant_wording_and_no_leaky_relu():
    # dead/ is ~0 for GELU by construction; the dormant figure is the one the layer is judged by.
    df = frame({"dead/act1": [0.0, 0.0, 0.0, 0.0], "dormant/act1": [0.2, 0.35, 0.5, 0.62]})
    (a,) = diagnose(df, {**MNIST_CFG, "activation": "gelu"}, GELU_LAYERS)
    assert a.kind == "dying_layer" and a.layer == "act1" and a.activation == "gelu"
    assert a.message == "act1: 62% of units dormant and rising over the last 3 flushes (35% -> 62%)"
    assert "dead" not in a.message
    assert [x["kind"] for x in a.actions] == ["recycle", "lr"]
    assert "gelu" in a.causes[0] and "init_bias=-1.0" in a.causes[0] and "kink" not in " ".join(a.causes)


def test_tanh_dormant_leads_with_saturation():
    layers = {"act1": {"activation": "tanh", "params": {}, "definition": "dormant", "class": "Tanh"}}
    (a,) = diagnose(frame({"dormant/act1": [0.4, 0.5, 0.6]}), MNIST_CFG, layers)
    assert a.causes[0].startswith("tanh saturation")
    assert any("learning rate 0.02" in c for c in a.causes)


def test_dead_layer_ignores_its_dormant_key():
    # A ReLU layer logs dormant/ too; it must not give a second alert for the same layer.
    df = frame({"dead/act1": [0.1, 0.1, 0.1], "dormant/act1": [0.4, 0.6, 0.8]})
    assert diagnose(df, MNIST_CFG, RELU_LAYERS) == []


def test_nan_in_dead_key_does_not_fire_or_raise():
    df = frame({"dead/act1": [0.4, float("nan"), 0.8]})
    assert diagnose(df, MNIST_CFG, RELU_LAYERS) == []
    df = frame({"dead/act1": [0.4, 0.6, None]})
    assert diagnose(df, MNIST_CFG, RELU_LAYERS) == []


# ---------------------------------------------------------------- gradients

def test_vanishing_gradient_fires_including_exact_zero():
    df = frame({"grad_norm/fc1.weight": [0.5, 3e-8, 1e-9, 0.0], "grad_norm/out.weight": [0.0] * 4})
    alerts = diagnose(df, MNIST_CFG)
    assert kinds(alerts) == [("vanishing_grad", "fc1.weight"), ("vanishing_grad", "out.weight")]
    assert alerts[0].step == 40 and "below 1e-07 over the last 3 flushes" in alerts[0].message
    assert "exactly 0" in alerts[1].message and "frozen" in alerts[1].causes[1]


def test_vanishing_needs_all_k_flushes_small():
    df = frame({"grad_norm/fc1.weight": [0.5, 0.4, 1e-9, 1e-9]})
    assert diagnose(df, MNIST_CFG) == []


def test_exploding_gradient_absolute():
    df = frame({"grad_norm/fc1.weight": [1.0, 2.0, 1500.0]})  # too few earlier flushes for the median rule
    (a,) = diagnose(df, MNIST_CFG)
    assert (a.kind, a.layer, a.step, a.severity) == ("exploding_grad", "fc1.weight", 30, "warning")
    assert a.message == "fc1.weight: gradient norm 1.5e+03 at step 30, above 1000"
    assert a.causes[0] == "learning rate 0.02 too high"
    assert a.actions == [{"label": "Branch with half the learning rate", "kind": "lr", "overrides": {"lr": 0.01}}]


def test_exploding_gradient_jump_over_median():
    df = frame({"grad_norm/fc1.weight": [0.5, 0.4, 0.6, 0.5, 80.0]})  # median 0.5, 160x
    (a,) = diagnose(df, MNIST_CFG)
    assert a.kind == "exploding_grad"
    assert a.message == "fc1.weight: gradient norm 80 at step 50, 160x its median 0.5 over the 4 earlier flushes"
    # Two earlier flushes are not enough for a median.
    assert diagnose(frame({"grad_norm/fc1.weight": [0.5, 0.5, 80.0]}), MNIST_CFG) == []
    # And 99x is under the jump.
    assert diagnose(frame({"grad_norm/fc1.weight": [0.5, 0.5, 0.5, 49.5]}), MNIST_CFG) == []


def test_one_alert_per_parameter_when_both_exploding_rules_hold():
    (a,) = diagnose(frame({"grad_norm/fc1.weight": [1.0, 1.0, 1.0, 5000.0]}), MNIST_CFG)
    assert "above 1000" in a.message


def test_healthy_run_gives_no_alerts():
    rng = np.random.default_rng(0)
    df = frame({
        "loss/train": list(np.linspace(2.0, 0.3, 20)), "loss/test": [0.5] * 20, "acc/test": [0.9] * 20,
        "dead/act1": list(0.05 + 0.01 * rng.random(20)), "dormant/act1": [0.1] * 20,
        "grad_norm/fc1.weight": list(0.5 + rng.random(20)), "grad_norm/fc1.bias": list(0.05 + 0.01 * rng.random(20)),
        "lr": [1e-3] * 20,
    })
    assert diagnose(df, {**MNIST_CFG, "lr": 1e-3, "init_bias": 0.0}, RELU_LAYERS, status_reason=None) == []


# ---------------------------------------------------------------- nan_loss

def test_nan_loss_from_trailing_nan_rows():
    df = frame({"loss/train": [2.0, 1.0, float("nan"), None], "dead/act1": [0.5, 0.6, 0.7, 0.8]})
    alerts = diagnose(df, MNIST_CFG, RELU_LAYERS)
    assert kinds(alerts) == [("nan_loss", "loss/train"), ("dying_layer", "act1")]  # errors first
    a = alerts[0]
    assert a.severity == "error" and a.step == 30
    assert a.message == "loss/train is NaN/inf from step 30 on (2 flushes)"
    assert a.causes[0] == "learning rate 0.02 too high"
    assert any("bad batch" in c for c in a.causes) and any("fp16" in c for c in a.causes)
    assert a.actions[0]["overrides"] == {"lr": 0.01}


def test_nan_earlier_but_finite_at_the_end_does_not_fire():
    assert diagnose(frame({"loss/train": [2.0, float("nan"), 1.0]}), MNIST_CFG) == []


def test_nan_loss_from_status_reason():
    df = frame({"loss/train": [2.0, 1.0]})
    (a,) = diagnose(df, MNIST_CFG, status_reason="loss became nan at step 120")
    assert (a.kind, a.severity, a.step, a.layer) == ("nan_loss", "error", 120, "loss")
    assert "loss became nan at step 120" in a.message
    (b,) = diagnose(pd.DataFrame(), None, status_reason="loss became inf")
    assert b.step is None and b.actions == []  # no config: no lr to halve
    assert diagnose(df, MNIST_CFG, status_reason="trainer process 42 is gone (crashed or killed)") == []


# ---------------------------------------------------------------- robustness

@pytest.mark.parametrize("df", [
    pd.DataFrame(),
    pd.DataFrame(columns=["run", "step", "epoch", "key", "value", "wall_time"]),
    frame({"dead/act1": [0.9], "grad_norm/fc1.weight": [1e9], "loss/test": [1.0]}),
    frame({"acc/test": [0.9, 0.9, 0.9], "lr": [0.1, 0.1, 0.1]}),
    frame({"dead/act1": [None, None, None], "grad_norm/fc1.weight": [None] * 4}),
    pd.DataFrame({"key": ["dead/act1"], "value": [0.5]}),  # no step column
    None,
])
def test_odd_input_gives_no_alerts_and_no_exceptions(df):
    assert diagnose(df, {}, {"act1": {}}) == []
    assert diagnose(df) == []


def test_sorting_is_deterministic_and_unsorted_rows_are_fine():
    df = frame({"dead/b": [0.4, 0.5, 0.6], "dead/a": [0.4, 0.5, 0.6], "grad_norm/a.weight": [0.0] * 3,
                "loss/train": [1.0, 1.0, math.nan]})
    shuffled = df.sample(frac=1.0, random_state=1)
    got = kinds(diagnose(shuffled, MNIST_CFG))
    assert got == [("nan_loss", "loss/train"), ("dying_layer", "a"), ("vanishing_grad", "a.weight"),
                   ("dying_layer", "b")]
    assert got == kinds(diagnose(df, MNIST_CFG))


# ---------------------------------------------------------------- a real run

def test_real_stress_run(tmp_path):
    """The stress preset (lr 2e-2, init_bias -1) kills about half of act1 at the start of epoch 2
    (dead/act1 jumps from ~5% to ~56%) and then plateaus, drifting slightly down. So the last 3
    flushes are not rising: no dying_layer alert on the finished run. Cut at the jump, the rule
    with K=2 sees the rise and blames the negative bias first."""
    from actlab.store.runs import RunStore
    from actlab.train.mnist import train_mnist

    train_mnist(dict(lr=2e-2, init_bias=-1.0, epochs=2, hidden=[64], log_every=10, runs_dir=str(tmp_path / "runs"),
                     checkpoints_dir=str(tmp_path / "ck"), name="stress", progress=False))
    r = RunStore(tmp_path / "runs").open("stress")
    df, _ = r.scalars()
    config, layers = r.config, r.meta["layers"]
    assert layers["act1"]["definition"] == "dead"
    dead = df[df["key"] == "dead/act1"].sort_values("step")
    vals, steps = dead["value"].tolist(), dead["step"].tolist()
    assert vals[-1] > 0.3  # the preset does kill units ...
    assert any(b < a - 1e-9 for a, b in zip(vals[-3:], vals[-2:]))  # ... but the end is not rising
    alerts = diagnose(df, config, layers, status_reason=r.status().reason)
    assert "dying_layer" not in [a.kind for a in alerts]
    assert "nan_loss" not in [a.kind for a in alerts]

    jump = next(i for i in range(1, len(vals)) if vals[i] > 0.3 and vals[i - 1] <= 0.3)
    cut = df[df["step"] <= steps[jump]]
    (a,) = [a for a in diagnose(cut, config, layers, rules=Rules(rising_flushes=2)) if a.kind == "dying_layer"]
    assert a.layer == "act1" and a.step == steps[jump] and a.activation == "relu"
    assert a.message.endswith(f"({vals[jump - 1]:.0%} -> {vals[jump]:.0%})")
    assert a.causes[0] == "negative bias init (init_bias=-1.0) puts pre-activations left of the kink"
    assert {"label": "Branch with recycling (ReDo)", "kind": "recycle", "overrides": {"recycle_every": 10}} in a.actions
