"""Signal propagation through random stacks, and the softmax / Gumbel-Softmax helpers."""
import math

import pytest

from actlab import UserError
from actlab.analysis import propagation as P
from actlab.dashboard.charts import activation as charts


def test_shapes_and_positive_values():
    r = P.signal_propagation("relu", depth=6, width=32, batch=64, init="he")
    assert r["layer"] == [1, 2, 3, 4, 5, 6]
    assert len(r["forward_std"]) == len(r["grad_norm"]) == 6
    assert all(v > 0 and math.isfinite(v) for v in r["forward_std"] + r["grad_norm"])


def test_he_keeps_relu_signal_but_default_init_shrinks_it():
    he = P.signal_propagation("relu", depth=20, width=128, init="he")
    default = P.signal_propagation("relu", depth=20, width=128, init="default")
    assert he["forward_std"][-1] > 0.2  # He's sqrt(2 / fan_in) is derived for ReLU
    assert default["forward_std"][-1] < 0.1 * he["forward_std"][-1]


def test_xavier_tanh_forward_signal_decays_slowly():
    r = P.signal_propagation("tanh", depth=20, width=128, init="xavier")
    assert 0.05 < r["forward_std"][-1] < r["forward_std"][0]


def test_seeded_and_parameterised():
    a = P.signal_propagation("elu", depth=3, width=16, alpha=0.5)
    assert a == P.signal_propagation("elu", depth=3, width=16, alpha=0.5)
    assert a != P.signal_propagation("elu", depth=3, width=16, alpha=2.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="softmax"), "vector-valued"),
    (dict(name="relu", init="lecun"), "unknown init"),
    (dict(name="relu", depth=0), "depth"),
    (dict(name="relu7"), "unknown activation"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(UserError, match=message):
        P.signal_propagation(**kwargs)


def test_parse_logits():
    assert P.parse_logits("2, 1,0.5 ; -1") == [2.0, 1.0, 0.5, -1.0]
    for bad, message in [("", "comma-separated"), ("1, x", "'x' is not a number"), ("1,,2", "comma-separated"),
                         ("3", "at least two"), ("1, inf", "finite")]:
        with pytest.raises(UserError, match=message):
            P.parse_logits(bad)


def test_softmax_probs_and_temperature():
    p = P.softmax_probs([2.0, 1.0, 0.0])
    assert sum(p) == pytest.approx(1.0)
    assert p[0] / p[1] == pytest.approx(math.e)
    cold = P.softmax_probs([2.0, 1.0, 0.0], tau=0.05)
    assert cold[0] > 0.999
    with pytest.raises(UserError, match="tau"):
        P.softmax_probs([1.0, 2.0], tau=0)


def test_gumbel_samples_are_distributions_and_hard_is_one_hot():
    y = P.gumbel_samples([1.0, 0.0, -1.0], tau=0.5, n=200)
    assert y.shape == (200, 3)
    assert y.sum(-1).sub(1).abs().max() < 1e-9
    hard = P.gumbel_samples([1.0, 0.0, -1.0], tau=0.5, n=200, hard=True)
    assert set(hard.flatten().tolist()) <= {0.0, 1.0}
    assert (hard.sum(-1) == 1).all()


def test_low_tau_sample_mean_matches_softmax_and_entropy_falls():
    logits = [2.0, 1.0, 0.5, -1.0]
    s = P.gumbel_summary(logits, tau=0.05, n=20000)
    # Gumbel-max: the argmax of z + Gumbel noise is an exact Categorical(softmax(z)) draw.
    assert s["l1_distance"] < 0.05
    sweep = P.tau_sweep(logits, [0.05, 0.5, 5.0], n=2000)
    assert sweep["sample_entropy"] == sorted(sweep["sample_entropy"])
    assert sweep["l1_distance"][0] < sweep["l1_distance"][-1]


def test_figures_carry_the_data():
    r = {"relu": P.signal_propagation("relu", depth=4, width=16)}
    fig = charts.propagation_figure(r, "grad_norm")
    assert list(fig.data[0].y) == r["relu"]["grad_norm"] and fig.layout.yaxis.type == "log"
    fig = charts.probs_figure(["a", "b"], {"true": [0.7, 0.3], "mean": [0.6, 0.4]})
    assert [list(t.y) for t in fig.data] == [[0.7, 0.3], [0.6, 0.4]]
    sweep = P.tau_sweep([1.0, 0.0], [0.1, 1.0], n=100)
    fig = charts.tau_sweep_figure(sweep)
    assert list(fig.data[1].y) == sweep["sample_entropy"]
