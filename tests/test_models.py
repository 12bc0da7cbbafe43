"""MLP: shapes, registry activations, layer names that make probe keys read well, bad options."""
import pytest
import torch
from torch import nn

from actlab import UserError
from actlab.models.mlp import MLP


def test_default_is_784_512_relu_10():
    m = MLP()
    assert m.fc1.in_features == 784 and m.fc1.out_features == 512 and m.out.out_features == 10
    assert m.act1.actlab_name == "relu" and isinstance(m.act1, nn.ReLU)
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_activation_and_params_come_from_the_registry():
    m = MLP(hidden=[16, 8], activation="leaky_relu", act_params={"alpha": 0.2})
    assert [n for n, mod in m.named_modules() if hasattr(mod, "actlab_name")] == ["act1", "act2"]
    assert m.act2.negative_slope == 0.2 and m.act2.actlab_params == {"alpha": 0.2}
    assert m(torch.randn(5, 784)).shape == (5, 10)


@pytest.mark.parametrize("norm,cls", [("layernorm", nn.LayerNorm), ("batchnorm", nn.BatchNorm1d)])
def test_norms(norm, cls):
    m = MLP(hidden=[8], norm=norm)
    assert isinstance(m.norm1, cls)
    assert m(torch.randn(4, 784)).shape == (4, 10)


def test_init_bias_and_dropout():
    torch.manual_seed(0)
    m = MLP(hidden=[64], init="he", init_bias=-1.0, dropout=0.5)
    assert torch.all(m.fc1.bias == -1.0)
    assert isinstance(m.drop1, nn.Dropout)
    assert m.fc1.weight.std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.1)  # He normal
    x = MLP(hidden=[64], init="xavier")
    assert x.fc1.bias.abs().sum() == 0


@pytest.mark.parametrize("kwargs,match", [({"norm": "groupnorm"}, "--norm"), ({"init": "orthogonal"}, "--init"),
                                          ({"dropout": 1.0}, "--dropout"), ({"hidden": []}, "--hidden"),
                                          ({"activation": "nope"}, "unknown activation"),
                                          ({"activation": "leaky_relu", "act_params": {"alpha": 5}}, "outside")])
def test_bad_options_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        MLP(**kwargs)
