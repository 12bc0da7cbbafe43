"""The registry against closed forms: what the explorer draws must be the textbook f and f'."""
import math

import pytest
import torch

from actlab import UserError
from actlab import activations as A

X = torch.linspace(-8, 8, 1601, dtype=torch.float64)
# Kinked functions: autograd's one-sided choice at the kink is a convention, so skip x == 0.
X_NO_KINK = X[X.abs() > 1e-9]


def close(a, b, tol=1e-9):
    return torch.allclose(a, b, atol=tol, rtol=0)


def test_every_scalar_activation_has_finite_curves():
    for name in A.names(vector=False):
        y, dy, d2y = A.derivatives(name, X)
        assert y.shape == dy.shape == d2y.shape == X.shape
        assert torch.isfinite(y).all() and torch.isfinite(dy).all() and torch.isfinite(d2y).all(), name


def test_names_split_scalar_and_vector():
    assert set(A.names(vector=True)) == {"softmax", "gumbel_softmax"}
    assert set(A.names(vector=False)) | set(A.names(vector=True)) == set(A.REGISTRY)


def test_sigmoid_derivative_is_s_times_one_minus_s():
    y, dy, d2y = A.derivatives("sigmoid", X)
    s = torch.sigmoid(X)
    assert close(y, s)
    assert close(dy, s * (1 - s))
    assert close(d2y, s * (1 - s) * (1 - 2 * s))
    assert float(dy.max()) == pytest.approx(0.25)


def test_tanh_derivative_is_one_minus_tanh_squared_in_unit_interval():
    y, dy, _ = A.derivatives("tanh", X)
    assert close(dy, 1 - torch.tanh(X) ** 2)
    assert (dy > 0).all() and (dy <= 1).all()
    assert float(dy[X.abs().argmin()]) == pytest.approx(1.0)


def test_relu_and_leaky_relu_piecewise_derivatives():
    x = X_NO_KINK
    y, dy, d2y = A.derivatives("relu", x)
    assert close(y, x.clamp(min=0))
    assert close(dy, (x > 0).double())
    assert (d2y == 0).all()
    y, dy, _ = A.derivatives("leaky_relu", x, alpha=0.1)
    assert close(y, torch.where(x > 0, x, 0.1 * x))
    assert close(dy, torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.1)))


def test_elu_derivative():
    x = X_NO_KINK
    y, dy, _ = A.derivatives("elu", x, alpha=1.5)
    assert close(y, torch.where(x > 0, x, 1.5 * (torch.exp(x) - 1)))
    assert close(dy, torch.where(x > 0, torch.ones_like(x), 1.5 * torch.exp(x)))


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_softplus_derivative_is_sigmoid_beta_x(beta):
    # torch's softplus switches to the identity above x * beta > 20; stay below that.
    x = X[X * beta < 19]
    y, dy, _ = A.derivatives("softplus", x, beta=beta)
    assert close(y, torch.log1p(torch.exp(beta * x)) / beta)
    assert close(dy, torch.sigmoid(beta * x))


def test_silu_and_swish_derivatives():
    s = torch.sigmoid(X)
    _, dy, _ = A.derivatives("silu", X)
    assert close(dy, s + X * s * (1 - s))
    sb = torch.sigmoid(2.0 * X)
    y, dy, _ = A.derivatives("swish", X, beta=2.0)
    assert close(y, X * sb)
    assert close(dy, sb + 2.0 * X * sb * (1 - sb))


def test_gelu_exact_and_tanh_approximation_agree_within_1e3():
    x = torch.linspace(-20, 20, 40001, dtype=torch.float64)
    exact, d_exact, _ = A.derivatives("gelu", x)
    approx, _, _ = A.derivatives("gelu_tanh", x)
    assert close(exact, x * 0.5 * (1 + torch.erf(x / math.sqrt(2))))
    phi = torch.exp(-x**2 / 2) / math.sqrt(2 * math.pi)
    assert close(d_exact, 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * phi)
    assert float((exact - approx).abs().max()) < 1e-3


def test_relu_properties_dead_zone_is_negative_half_line():
    p = A.properties("relu")
    (lo, hi), = p["dead_zone"]
    assert lo == -6.0 and abs(hi) < 1e-6
    assert p["output_range"] == [0.0, math.inf]
    assert p["monotonic"] and not p["smooth"] and not p["zero_centred"]


@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_leaky_relu_is_never_dead(alpha):
    assert A.properties("leaky_relu", alpha=alpha)["dead_zone"] == []


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_sigmoid_tanh_saturate_in_both_tails(name):
    p = A.properties(name)
    assert p["dead_zone"] == []
    (l0, l1), (r0, r1) = p["saturation_zones"]
    assert l0 == -6.0 and r1 == 6.0 and l1 < -2 and r0 > 2
    assert p["smooth"] and p["monotonic"]


def test_output_ranges_and_flags():
    assert A.properties("sigmoid")["output_range"] == pytest.approx([0.0, 1.0])
    assert A.properties("tanh")["output_range"] == pytest.approx([-1.0, 1.0])
    assert A.properties("relu6")["output_range"] == pytest.approx([0.0, 6.0])
    assert A.properties("elu", alpha=1.0)["output_range"] == [pytest.approx(-1.0), math.inf]
    assert A.properties("leaky_relu")["output_range"] == [-math.inf, math.inf]
    for name in ["tanh", "selu", "softsign"]:
        assert A.properties(name)["zero_centred"], name
    for name in ["relu", "sigmoid", "softplus", "gelu"]:
        assert not A.properties(name)["zero_centred"], name
    for name in ["gelu", "silu", "mish", "softplus", "elu"]:
        assert A.properties(name)["smooth"], name
    # Non-monotonic: the dip below zero of GELU/SiLU/Mish.
    for name in ["gelu", "silu", "mish", "hardswish"]:
        assert not A.properties(name)["monotonic"], name


def test_eps_widens_the_dead_zone():
    # With eps above the sigmoid's tail slope, the tails count as dead.
    assert A.properties("sigmoid", eps=0.0)["dead_zone"] == []
    assert A.properties("sigmoid", eps=0.01)["dead_zone"]


def test_resolve_params_defaults_and_errors():
    assert A.resolve_params("elu") == {"alpha": 1.0}
    assert A.resolve_params("leaky_relu", alpha=0.2) == {"alpha": 0.2}
    with pytest.raises(UserError, match="no parameter 'beta'"):
        A.resolve_params("elu", beta=1.0)
    with pytest.raises(UserError, match="outside"):
        A.resolve_params("elu", alpha=100.0)
    with pytest.raises(UserError, match="outside"):
        A.resolve_params("softplus", beta=float("nan"))
    with pytest.raises(UserError, match="unknown activation"):
        A.resolve_params("relu7")
    with pytest.raises(UserError, match="vector-valued"):
        A.derivatives("softmax", X)


def test_create_act_layer_tags_the_module():
    m = A.create_act_layer("swish", beta=2.0)
    assert m.actlab_name == "swish" and m.actlab_params == {"beta": 2.0}
    x = torch.tensor([1.0])
    assert float(m(x)) == pytest.approx(float(torch.sigmoid(torch.tensor(2.0))))


def test_parse_param_args():
    assert A.parse_param_args(["alpha=0.5", "beta=2"]) == {"alpha": 0.5, "beta": 2.0}
    with pytest.raises(UserError, match="KEY=VALUE"):
        A.parse_param_args(["alpha"])
    with pytest.raises(UserError, match="needs a number"):
        A.parse_param_args(["alpha=big"])
