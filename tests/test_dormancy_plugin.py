"""The dormancy plug-in on a live watch: hand-built layer, bit-identical training, store keys."""
import numpy as np
import pytest
import torch
from actlab.store.runs import RunStore
from actlab.watcher import watch
from actlab.watcher.dormancy import DEFINITIONS
from actlab.watcher.dormancy_plugin import DormancyPlugin
from torch import nn


def _hand_model():
    """fc1 -> ReLU -> fc2 on positive inputs. Unit 0: always negative (dead). Unit 1: tiny output
    (ReDo-dormant) but full gradient. Unit 2: ordinary. Unit 3: ordinary output, but fc2 hardly
    reads it, so almost no gradient reaches it (GraMa-dormant, not ReDo-dormant)."""
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[-1.0, -1.0], [0.01, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        m[0].bias.copy_(torch.tensor([-0.1, 0.0, 0.0, 0.0]))
        m[2].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 0.001]]))
        m[2].bias.zero_()
    return m


def _drive(w, model, batches, opt=None):
    for x in batches:
        loss = model(x).pow(2).mean()
        loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad()
        else:
            model.zero_grad()
        w.step(loss=loss)


def test_hand_case_flags_exact_units(tmp_path):
    torch.manual_seed(0)
    model = _hand_model()
    x = 1.0 + torch.rand(32, 2)
    p = DormancyPlugin(every=1, tau=0.1, grama_tau=0.1, groups=4, n_boot=50)
    w = watch(model, run="hand", runs_dir=tmp_path, log_every=1, verbose=False, grads=False, plugins=[p])
    _drive(w, model, [x])
    masks = p.masks["1"]
    assert masks["dead"].tolist() == [True, False, False, False]
    assert masks["redo"].tolist() == [True, True, False, False]
    assert masks["grama"].tolist() == [True, False, False, True]
    assert masks["overactive"].tolist() == [False] * 4
    assert "saturated" not in masks  # ReLU has no flat tail that is not dead
    # the same figures by hand from the layer's real activations and gradients
    xx = x.clone()
    z = model[0](xx)
    z.retain_grad()
    model[2](torch.relu(z)).pow(2).mean().backward()
    h = torch.relu(z).detach().abs().mean(0)
    assert ((h / h.mean()) <= 0.1).tolist() == masks["redo"].tolist()
    g = z.grad.abs().mean(0)
    assert ((g / g.mean()) <= 0.1).tolist() == masks["grama"].tolist()
    vals = p.last
    assert vals["dormancy/dead/1"] == 0.25 and vals["dormancy/redo/1"] == 0.5 and vals["dormancy/grama/1"] == 0.5
    w.close()


def test_gradient_hook_leaves_training_bit_identical(tmp_path):
    def train(with_plugin: bool):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        data = [torch.randn(8, 6) for _ in range(12)]
        p = DormancyPlugin(every=2)
        w = watch(model, run=f"bit{int(with_plugin)}", runs_dir=tmp_path, log_every=3, verbose=False,
                  plugins=[p] if with_plugin else [])
        if with_plugin:
            _drive(w, model, data, opt)
            assert p.acc["3"].grad_batches == 0  # cleared by the last flush...
            assert p.last["dormancy/grama/3"] == p.last["dormancy/grama/3"]  # ...after scoring grama
        else:
            for x in data:
                model(x).pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
                w.step()
        w.close()
        return [q.detach().clone() for q in model.parameters()]

    a, b = train(False), train(True)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_hooks_only_on_sampled_steps(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    p = DormancyPlugin(every=4)
    w = watch(model, run="armed", runs_dir=tmp_path, log_every=100, verbose=False, plugins=[p])
    armed = []
    for _ in range(8):
        armed.append(bool(p._handles))
        model(torch.randn(5, 4)).sum().backward()
        w.step()
    assert armed == [True, False, False, False, True, False, False, False]
    assert p.acc["1"].batches == 2
    w.close()


def test_store_keys_intervals_and_overlap(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    w = watch(model, run="keys", runs_dir=tmp_path, log_every=4, verbose=False,
              plugins=[DormancyPlugin(every=1, groups=4, n_boot=40)])
    _drive(w, model, [3 * torch.randn(16, 5) for _ in range(8)], opt)
    w.close()
    r = RunStore(tmp_path).open("keys")
    keys = set(r.keys())
    for layer in ("1", "3"):
        for d in ("redo", "grama", "age", "overactive", "utility"):
            assert f"dormancy/{d}/{layer}" in keys, (d, layer)
        assert f"rank/{layer}" in keys and f"feature_norm/{layer}" in keys
        assert f"dormancy_lo/redo/{layer}" in keys and f"dormancy_hi/redo/{layer}" in keys
    assert "dormancy/saturated/1" in keys and "dormancy/saturated/3" not in keys  # tanh has tails, relu none
    assert "dormancy/dead/3" in keys
    df, _ = r.scalars()
    lo = df[df.key == "dormancy_lo/redo/3"].value.to_numpy()
    hi = df[df.key == "dormancy_hi/redo/3"].value.to_numpy()
    assert (lo <= hi).all() and len(lo) == 2
    rank = df[df.key == "rank/3"].value.to_numpy()
    assert ((rank >= 1) & (rank <= 12)).all()
    ov3 = r.unit_activity("overlap/3")
    m3 = np.array(ov3[-1]["values"], dtype=float).reshape(len(DEFINITIONS), len(DEFINITIONS))
    assert np.isnan(m3[DEFINITIONS.index("saturated")]).all()  # relu: saturated is not defined there
    ov = r.unit_activity("overlap/1")
    assert len(ov) == 2
    m = np.array(ov[-1]["values"], dtype=float).reshape(len(DEFINITIONS), len(DEFINITIONS))
    i = DEFINITIONS.index("redo")
    assert m[i, i] == 1.0  # defined here: 1 on the diagonal, even for an empty set
    assert np.allclose(np.nan_to_num(m, nan=-1), np.nan_to_num(m.T, nan=-1))
    r.close()


@pytest.mark.parametrize("kw", [{"tau": 2.0}, {"rho": 0.0}, {"every": 0}])
def test_plugin_bad_settings(kw):
    from actlab.errors import UserError

    with pytest.raises(UserError, match=next(iter(kw))):
        DormancyPlugin(**kw)


def test_scores_ride_in_the_flush_record(tmp_path):
    """Into the record before it is written: the store and every sink plug-in after it see them."""
    from actlab.watcher import WatchPlugin

    seen = []

    class Sink(WatchPlugin):
        def on_flush(self, watcher, record):
            seen.append(sorted(k for k in record.scalars if k.startswith(("dormancy/", "rank/"))))

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    p = DormancyPlugin(every=1, groups=2, n_boot=20)
    w = watch(model, run="rec", runs_dir=tmp_path, log_every=2, verbose=False, plugins=[p, Sink()])
    hooks_before = w.probes.hook_seconds
    _drive(w, model, [torch.randn(6, 4) for _ in range(2)])
    w.close()
    assert "dormancy/redo/1" in seen[0] and "rank/1" in seen[0]
    assert w.probes.hook_seconds > hooks_before  # the plug-in's hook time is counted in watch/overhead_pct
