"""Probes engine: dead fraction, zero fraction, dormant score, histograms, activity, revived on hand-built cases."""
import pytest
import torch
from torch import nn

from actlab.activations import create_act_layer, identify
from actlab.watcher.probes import ActivationProbes, Target, grad_norms


class Pre(nn.Module):
    """Feeds known pre-activations straight into a registry activation named `act`."""

    def __init__(self, name="relu", **params):
        super().__init__()
        self.act = create_act_layer(name, **params)

    def forward(self, x):
        return self.act(x)


def probes_for(m: nn.Module, **kw) -> ActivationProbes:
    ident = identify(m.act)
    t = Target("act", m.act, ident.activation, ident.params, dead=ident.kind == "exact", cls=type(m.act).__name__)
    return ActivationProbes([t], **kw)


# 4 samples x 4 units. unit0 always < 0, unit1 > 0 once, unit2 exactly 0 (ReLU'(0) = 0), unit3 always > 0.
X = torch.tensor([[-1.0, -2.0, 0.0, 1.0],
                  [-3.0, 0.5, 0.0, 2.0],
                  [-0.5, -1.0, 0.0, 3.0],
                  [-2.0, -4.0, 0.0, 0.1]])


def test_relu_dead_fraction_is_exact_on_a_known_case():
    m = Pre("relu").train()
    p = probes_for(m)
    m(X)
    s = p.flush()["act"]
    assert s["dead"] == 0.5
    assert s["alive"].tolist() == [False, True, False, True]
    assert s["activity"].tolist() == [0.0, 0.25, 0.0, 1.0]
    assert s["zero_frac"] == pytest.approx((X <= 0).float().mean().item())
    # mean |out| per unit: 0, 0.125, 0, 1.525 -> layer mean 0.4125; tau 0.1 -> units 0, 2 dormant (0.125/0.4125 = 0.30)
    assert s["score"] == pytest.approx([0.0, 0.125 / 0.4125, 0.0, 1.525 / 0.4125], rel=1e-5)
    assert s["dormant"] == 0.5


def test_dead_means_every_sample_across_batches_and_flushes_of_the_window():
    m = Pre("relu").train()
    p = probes_for(m)
    m(X[:1])  # only unit3 alive so far
    assert p.flush()["act"]["dead"] == 0.75
    m(X[1:2])  # unit1 comes alive in the second interval: still the same window
    assert p.flush()["act"]["dead"] == 0.5


def test_autograd_path_agrees_with_the_relu_fast_path():
    torch.manual_seed(0)
    x = torch.randn(256, 32) - 1.5
    x[:, :8] = -torch.rand(256, 8)  # some units dead, the rest alive on some samples
    m = Pre("relu").train()
    fast = probes_for(m)
    m(x)
    fast_alive = fast.flush()["act"]["alive"]
    fast.remove()
    slow = probes_for(m, stats_every=1)
    slow.layers["act"].rule = "autograd"  # bypass the shortcut
    m(x)
    assert (slow.flush()["act"]["alive"] == fast_alive).all()
    assert 0 < fast_alive.mean() < 1


@pytest.mark.parametrize("shape", [(48, 40), (6, 8, 40)])
def test_the_relu_hooks_fast_path_gives_the_general_paths_figures(shape, monkeypatch):
    """The hook's fast path (one BLAS product a forward, histogram subsamples binned at the flush)
    against the general path on the same batches: every figure of two windows, subsampled
    histogram included (both draw the same offsets)."""
    torch.manual_seed(0)
    xs = [torch.randn(*shape) - 0.3 * k for k in range(7)]
    xs[3][..., 5] = float("nan")  # a NaN output is not active
    lin = nn.Linear(40, 40)
    figures = []
    for fast in (True, False):
        m = Pre("relu").train()
        p = probes_for(m, stats_every=3, hist_sample=100)
        if not fast:
            monkeypatch.setattr(p, "_fast_path", lambda *a: None)
        got = []
        for x in xs:
            m(lin(x))  # an input that requires grad, as in training
            if x is xs[4]:
                got.append(p.flush())
                p.end_window()
        got.append(p.flush())
        L = p.layers["act"]
        assert (L.fast is not None) == fast
        assert torch.is_grad_enabled()
        figures.append(got)
    for a, b in zip(*figures):
        a, b = a["act"], b["act"]
        for k in ("dead", "dormant", "zero_frac", "sampled_batches", "sampled_samples", "window_samples", "revived"):
            assert (a.get(k) is None) == (b.get(k) is None), k
            assert a.get(k) is None or a[k] == pytest.approx(b[k], rel=1e-6), k
        for k in ("score", "activity", "hist", "alive"):
            assert a[k] == pytest.approx(b[k], rel=1e-5), k
    assert figures[0][0]["act"]["hist"].sum() == pytest.approx(2 * torch.Size(shape).numel(), rel=0.05)  # batches 0, 3


def test_the_fast_path_keeps_no_graph_and_restores_grad_mode():
    m = Pre("relu").train()
    p = probes_for(m, stats_every=2)
    lin = nn.Linear(8, 8)
    for _ in range(4):
        m(lin(torch.randn(16, 8))).sum().backward()
        assert torch.is_grad_enabled()
    L = p.layers["act"]
    assert L.fast is not None and not L.d_sum.requires_grad and not L.active.requires_grad
    with torch.no_grad():
        m(lin(torch.randn(16, 8)))
    assert torch.is_grad_enabled() and p.flush()["act"]["window_samples"] == 80


@pytest.mark.parametrize("name,params", [("leaky_relu", {"alpha": 0.01}), ("gelu", {}), ("elu", {}), ("prelu", {})])
def test_activations_with_gradient_everywhere_are_never_dead(name, params):
    m = Pre(name, **params).train()
    p = probes_for(m)
    m(X - 3)  # left of zero: ReLU would be dead everywhere
    assert p.flush()["act"]["dead"] == 0.0


def test_relu6_is_dead_on_both_sides():
    m = Pre("relu6").train()
    p = probes_for(m)
    m(torch.tensor([[-1.0, 7.0, 3.0], [-2.0, 8.0, 5.0]]))
    assert p.flush()["act"]["alive"].tolist() == [False, False, True]


def test_histogram_counts_sum_to_values_and_clamp_outliers():
    m = Pre("relu").train()
    p = probes_for(m, bins=12, hist_range=(-6, 6), stats_every=1)
    x = torch.tensor([[-100.0, -5.5, 0.5, 100.0]])
    m(x)
    m(X)
    h = p.flush()["act"]["hist"]
    assert h.sum() == x.numel() + X.numel()
    assert h[0] == 2 and h[-1] == 1  # -100 clamped into the first bin with -5.5; +100 into the last
    assert len(p.edges()) == 13 and p.edges()[0] == -6 and p.edges()[-1] == 6


def test_sampling_every_k_batches_is_reported():
    m = Pre("relu").train()
    p = probes_for(m, stats_every=2)
    for _ in range(5):
        m(X)
    s = p.flush()["act"]
    assert s["sampled_batches"] == 3 and s["sampled_samples"] == 12 and s["window_samples"] == 20
    assert s["hist"].sum() == 3 * X.numel()


def test_a_smooth_layer_measures_its_window_on_the_sampled_batches_only():
    """ReLU's dead/ needs every forward; GELU's figures come from the sampled batches, and its hook
    only counts on the others. Batches 0, 2, 4 are sampled: the score is theirs alone."""
    m = Pre("gelu").train()
    p = probes_for(m, stats_every=2)
    xs = [X + k for k in range(5)]
    for x in xs:
        m(x)
    s = p.flush()["act"]
    assert s["sampled_batches"] == 3 and s["window_samples"] == s["sampled_samples"] == 12
    mean = torch.stack([torch.nn.functional.gelu(xs[k]).abs().mean(0) for k in (0, 2, 4)]).mean(0)
    assert torch.allclose(torch.as_tensor(s["score"]).float(), mean / mean.mean(), rtol=1e-5)


def test_revived_counts_units_dead_last_window_alive_now():
    m = Pre("relu").train()
    p = probes_for(m)
    m(X)  # window 1: units 0 and 2 dead
    p.flush()
    p.end_window()
    m(torch.tensor([[1.0, -1.0, 1.0, -1.0]]))  # window 2: 0 and 2 come back, 1 and 3 die
    s = p.flush()["act"]
    assert s["revived"] == 2 and s["dead"] == 0.5


def test_grad_norms_match_torch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    model(torch.randn(11, 5)).pow(2).sum().backward()
    names, norms = grad_norms(model.named_parameters())
    got = dict(zip(names, norms.tolist()))
    for name, param in model.named_parameters():
        assert got[name] == pytest.approx(torch.linalg.vector_norm(param.grad).item(), rel=1e-5)


def test_eval_mode_and_paused_do_not_count_but_exact_count_does():
    m = Pre("relu")
    p = probes_for(m)
    m.eval()
    m(X)
    m.train()
    with p.paused():
        m(X)
    assert p.flush() == {}
    assert p.exact_dead_count(m, [X]) == {"dead_exact/act": 0.5}
    assert m.training  # restored


def test_dead_zone_after_a_linear_uses_the_registry_derivative():
    fc = nn.Linear(3, 4)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    p = ActivationProbes([Target("fc", fc, "relu", {}, role="pre")])
    fc(torch.randn(8, 3))
    s = p.flush()["fc"]
    assert s["dead"] == 0.5 and s["zero_frac"] == 0.5


def test_disabled_probes_record_nothing():
    m = Pre("relu").train()
    p = probes_for(m)
    p.enabled = False
    m(X)
    assert p.flush() == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_probes_on_cuda_match_cpu():
    m = Pre("relu").train().cuda()
    p = probes_for(m)
    m(X.cuda())
    assert p.flush()["act"]["dead"] == 0.5
