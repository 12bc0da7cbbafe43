"""Recycling by any dormancy definition: the optimizer-state conventions (core/watch/recycle.py)."""
import pytest
import torch
from actlab.watch import find_layers
from actlab.watch.recycle import find_pairs, recycle_units
from torch import nn


def _net_with_constant_unit():
    """Unit 1 of the hidden layer ignores its input: h_1 = relu(0.7) = 0.7 on every sample."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        m[0].weight[1] = 0.0
        m[0].bias[1] = 0.7
    return m


def _adam(m, x):
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
    with torch.no_grad():  # Adam moved unit 1's weights a little: make it constant again
        m[0].weight[1] = 0.0
        m[0].bias[1] = 0.7
    return opt


@pytest.mark.parametrize("convention", ["redo", "cbp"])
def test_conventions(convention):
    m = _net_with_constant_unit()
    x = torch.randn(16, 3)
    opt = _adam(m, x)
    pair = find_pairs(m, find_layers(m)[0])["1"]
    mask = torch.tensor([False, True, False, False])
    with torch.no_grad():
        before = m(x)
    w_out_col = m[2].weight[:, 1].detach().clone()
    b_out = m[2].bias.detach().clone()
    done = recycle_units(pair, mask, opt, m, torch.Generator().manual_seed(0), convention=convention,
                         mean_act=torch.tensor([0.0, 0.7, 0.0, 0.0]))
    assert done["convention"] == convention
    with torch.no_grad():
        after = m(x)
    steps = [float(opt.state[p]["step"]) for p in (m[0].weight, m[0].bias, m[2].weight)]
    assert opt.state[m[0].weight]["exp_avg"][1].abs().sum() == 0  # both conventions zero the moments
    if convention == "redo":
        # the constant unit's contribution 0.7 * w_out[:, 1] is gone from the output; Adam's step kept
        torch.testing.assert_close(after, before - 0.7 * w_out_col)
        assert steps == [3.0, 3.0, 3.0]
        assert torch.equal(m[2].bias, b_out)
    else:
        # continual backprop moved it into the next layer's bias: the function is unchanged
        torch.testing.assert_close(after, before)
        torch.testing.assert_close(m[2].bias, b_out + 0.7 * w_out_col)
        assert steps == [0.0, 0.0, 0.0] and done["step_counts_reset"] == 3
        assert float(opt.state[m[2].bias]["step"]) == 3.0  # the next layer's bias keeps its count


def test_unknown_convention():
    m = _net_with_constant_unit()
    pair = find_pairs(m, find_layers(m)[0])["1"]
    with pytest.raises(ValueError, match="convention"):
        recycle_units(pair, torch.ones(4, dtype=torch.bool), convention="adam")
