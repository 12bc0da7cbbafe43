"""Probes: dead fraction, zero fraction, histograms, activity, revived and gradient norms on hand-built cases."""
import pytest
import torch
from torch import nn

from core.activations import create_act_layer
from core.probes import ActivationProbes
from core.runs import RunStore


class Pre(nn.Module):
    """Feeds known pre-activations straight into a registry activation named `act`."""

    def __init__(self, name="relu", **params):
        super().__init__()
        self.act = create_act_layer(name, **params)

    def forward(self, x):
        return self.act(x)


# 4 samples x 4 units. unit0 always < 0, unit1 > 0 once, unit2 exactly 0 (ReLU'(0) = 0), unit3 always > 0.
X = torch.tensor([[-1.0, -2.0, 0.0, 1.0],
                  [-3.0, 0.5, 0.0, 2.0],
                  [-0.5, -1.0, 0.0, 3.0],
                  [-2.0, -4.0, 0.0, 0.1]])


def test_relu_dead_fraction_is_exact_on_a_known_case():
    m = Pre("relu").train()
    p = ActivationProbes(m)
    m(X)
    s = p.stats()["layers"]["act"]
    assert s["dead"] == 0.5
    assert s["alive"].tolist() == [False, True, False, True]
    assert s["activity"].tolist() == [0.0, 0.25, 0.0, 1.0]
    assert s["zero_frac"] == pytest.approx((X <= 0).float().mean().item())


def test_dead_means_every_sample_across_batches_of_the_window():
    m = Pre("relu").train()
    p = ActivationProbes(m)
    m(X[:1])  # only unit3 alive so far
    assert p.stats()["layers"]["act"]["dead"] == 0.75
    m(X[1:2])  # unit1 comes alive in the second batch: still the same window
    assert p.stats()["layers"]["act"]["dead"] == 0.5


def test_autograd_path_agrees_with_the_relu_fast_path():
    torch.manual_seed(0)
    x = torch.randn(256, 32) - 1.5
    x[:, :8] = -torch.rand(256, 8)  # some units dead, the rest alive on some samples
    m = Pre("relu").train()
    fast = ActivationProbes(m)
    m(x)
    fast_alive = fast.stats()["layers"]["act"]["alive"]
    fast.remove()
    slow = ActivationProbes(m)
    slow.layers["act"].act = "autograd"  # bypass the elementwise shortcut
    m(x)
    assert (slow.stats()["layers"]["act"]["alive"] == fast_alive).all()
    assert 0 < fast_alive.mean() < 1


@pytest.mark.parametrize("name,params", [("leaky_relu", {"alpha": 0.01}), ("gelu", {}), ("elu", {}), ("prelu", {})])
def test_activations_with_gradient_everywhere_are_never_dead(name, params):
    m = Pre(name, **params).train()
    p = ActivationProbes(m)
    m(X - 3)  # left of zero: ReLU would be dead everywhere (further left, float32 GELU' underflows to 0)
    assert p.stats()["layers"]["act"]["dead"] == 0.0


def test_relu6_is_dead_on_both_sides():
    m = Pre("relu6").train()
    p = ActivationProbes(m)
    m(torch.tensor([[-1.0, 7.0, 3.0], [-2.0, 8.0, 5.0]]))
    assert p.stats()["layers"]["act"]["alive"].tolist() == [False, False, True]


def test_histogram_counts_sum_to_values_and_clamp_outliers():
    m = Pre("relu").train()
    # stats_every=1: every batch enters the histogram (the default samples one batch in 16).
    p = ActivationProbes(m, bins=12, hist_range=(-6, 6), stats_every=1)
    x = torch.tensor([[-100.0, -5.5, 0.5, 100.0]])
    m(x)
    m(X)
    h = p.stats()["layers"]["act"]["hist"]
    assert h.sum() == x.numel() + X.numel()
    assert h[0] == 2 and h[-1] == 1  # -100 clamped into the first bin with -5.5; +100 into the last
    assert len(p.edges()) == 13 and p.edges()[0] == -6 and p.edges()[-1] == 6


def test_revived_counts_units_dead_last_window_alive_now():
    m = Pre("relu").train()
    p = ActivationProbes(m)
    m(X)  # window 1: units 0 and 2 dead
    p.flush(None, 1)
    p.end_window()
    m(torch.tensor([[1.0, -1.0, 1.0, -1.0]]))  # window 2: 0 and 2 come back, 1 and 3 die
    s = p.flush(None, 2)
    assert s["revived/act"] == 2
    assert s["dead/act"] == 0.5


def test_grad_norms_match_torch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), create_act_layer("relu"), nn.Linear(7, 3))
    p = ActivationProbes(model)
    model(torch.randn(11, 5)).pow(2).sum().backward()
    p.after_backward(model)
    got = p.stats()["grad_norm"]
    for name, param in model.named_parameters():
        assert got[name] == pytest.approx(torch.linalg.vector_norm(param.grad).item(), rel=1e-5)
    assert set(got) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_flush_writes_the_store_and_resets_the_interval(runs_dir):
    m = Pre("relu").train()
    p = ActivationProbes(m, bins=8, hist_range=(-4, 4))
    w = RunStore(runs_dir).create("p", {})
    m(X)
    p.flush(w, step=5, epoch=0.5)
    m(X[:1])
    p.flush(w, step=10, epoch=1.0)
    r = RunStore(runs_dir).open("p")
    df, _ = r.scalars()
    dead = df[df.key == "dead/act"]
    assert dead.step.tolist() == [5, 10] and dead.value.tolist() == [0.5, 0.5]  # mask spans the window
    hists = r.histograms("pre/act")
    assert [sum(h["counts"]) for h in hists] == [16, 4]  # histograms are per interval
    assert r.unit_activity("act")[1]["values"] == [0.0, 0.0, 0.0, 1.0]


def test_eval_mode_and_paused_do_not_count_but_exact_count_does():
    m = Pre("relu")
    p = ActivationProbes(m)
    m.eval()
    m(X)
    m.train()
    with p.paused():
        m(X)
    assert p.stats()["layers"] == {}
    assert p.exact_dead_count(m, X) == {"dead_exact/act": 0.5}
    assert m.training  # restored


def test_extra_modules_use_the_registry_derivative():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())  # an untagged module, as in Hugging Face models
    p = ActivationProbes(model, extra={"hf_act": (model[1], "relu")})
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    model.train()
    model(torch.randn(8, 3))
    assert p.stats()["layers"]["hf_act"]["dead"] == 0.5


def test_disabled_probes_record_nothing():
    m = Pre("relu").train()
    p = ActivationProbes(m)
    p.enabled = False
    m(X)
    assert p.stats() == {"layers": {}, "grad_norm": {}}
    assert p.masks() == {}


def test_masks_are_device_tensors_for_all_reduce():
    m = Pre("relu").train()
    p = ActivationProbes(m)
    m(X)
    masks = p.masks()
    assert masks["act"].dtype == torch.bool and masks["act"].tolist() == [False, True, False, True]
    p.all_reduce()  # no process group: a no-op that keeps the statistics
    assert p.stats()["layers"]["act"]["dead"] == 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_probes_on_cuda_match_cpu():
    m = Pre("relu").train()
    p = ActivationProbes(m)
    m(X.cuda())
    assert p.stats()["layers"]["act"]["dead"] == 0.5
