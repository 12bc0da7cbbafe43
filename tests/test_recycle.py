"""Recycling dormant units (core/recycle.py) and the control path (commands -> watcher -> events)."""
import pytest
import torch
from torch import nn

from actlab import UserError
from actlab.models.mlp import MLP
from actlab.watcher.recycle import RecyclePair, find_pairs, recycle_units
from actlab.store.runs import RunStore
from actlab.watcher import find_layers, watch


def _adam_steps(model, x, n=3, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(n):
        out = model(x)
        loss = (out[0] if isinstance(out, tuple) else getattr(out, "last_hidden_state", out)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


def _state(opt, p):
    return {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor) and v.shape == p.shape}


def _check_surgery(model, layer, x, forward=None):
    """Outputs unchanged right after the recycle, recycled incoming rows redrawn, the optimizer state of
    exactly those entries zero and every other entry untouched. The recycled units are made dead first
    (a bias far left of the kink): zeroing the outgoing weights of a unit that still fires would change
    the output by its contribution, so "no jump" is a property of recycling dead units."""
    forward = forward or (lambda: model(x))
    torch.manual_seed(0)
    opt = _adam_steps(model, x)
    targets, _ = find_layers(model)
    pairs = find_pairs(model, targets)
    pair = pairs[layer]
    assert isinstance(pair, RecyclePair), pair
    units = pair.incoming.weight.shape[0]
    mask = torch.zeros(units, dtype=torch.bool)
    mask[::2] = True
    with torch.no_grad():
        pair.incoming.bias[mask] = -1e4
    model.eval()
    with torch.no_grad():
        before = forward()
        before = getattr(before, "last_hidden_state", before)
    w_in, w_out = pair.incoming.weight.detach().clone(), pair.outgoing.weight.detach().clone()
    s_in, s_out, s_bias = _state(opt, pair.incoming.weight), _state(opt, pair.outgoing.weight), _state(opt, pair.incoming.bias)
    assert s_in and all(v.abs().sum() > 0 for v in s_in.values())
    done = recycle_units(pair, mask, opt, model, torch.Generator().manual_seed(1))
    assert done["units"] == int(mask.sum())
    with torch.no_grad():
        after = forward()
        after = getattr(after, "last_hidden_state", after)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    # Incoming rows of recycled units redrawn, the others bit-identical.
    assert not torch.equal(pair.incoming.weight[mask], w_in[mask])
    assert torch.equal(pair.incoming.weight[~mask], w_in[~mask])
    assert torch.all(pair.incoming.bias[mask] == 0)
    # Outgoing columns of recycled units zero (a block of columns each after a flatten).
    cols = mask.repeat_interleave(pair.block)
    assert torch.all(pair.outgoing.weight[:, cols] == 0)
    assert torch.equal(pair.outgoing.weight[:, ~cols], w_out[:, ~cols])
    for name, v in _state(opt, pair.incoming.weight).items():
        assert torch.all(v[mask] == 0), name
        assert torch.equal(v[~mask], s_in[name][~mask]), name
    for name, v in _state(opt, pair.incoming.bias).items():
        assert torch.all(v[mask] == 0) and torch.equal(v[~mask], s_bias[name][~mask]), name
    for name, v in _state(opt, pair.outgoing.weight).items():
        assert torch.all(v[:, cols] == 0) and torch.equal(v[:, ~cols], s_out[name][:, ~cols]), name
    return pair


def test_surgery_mlp():
    torch.manual_seed(0)
    model = MLP(20, [16, 12], 5, "relu")
    pair = _check_surgery(model, "act1", torch.randn(32, 20))
    assert (pair.incoming_name, pair.outgoing_name) == ("fc1", "fc2")
    pair2 = find_pairs(model, find_layers(model)[0])["act2"]
    assert (pair2.incoming_name, pair2.outgoing_name) == ("fc2", "out")


def test_surgery_mlp_he_init_redraws_with_its_own_scale():
    torch.manual_seed(0)
    model = MLP(400, [256], 5, "relu", init="he")
    pair = find_pairs(model, find_layers(model)[0])["act1"]
    mask = torch.ones(256, dtype=torch.bool)
    recycle_units(pair, mask, None, model, torch.Generator().manual_seed(0))
    # kaiming_normal (relu): std sqrt(2 / fan_in) = 0.0707, not torch's default U(+-1/sqrt(400)) (std 0.0289).
    assert pair.incoming.weight.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.05)


def test_surgery_cnn_conv_to_conv_and_conv_to_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(6 * 4 * 4, 10))
    x = torch.randn(4, 1, 8, 8)
    p0 = _check_surgery(model, "2", x)
    assert (p0.incoming_name, p0.outgoing_name, len(p0.norms)) == ("0", "3", 1)
    p1 = _check_surgery(model, "4", x)
    assert (p1.incoming_name, p1.outgoing_name, p1.block) == ("3", "6", 16)


def test_surgery_tiny_bert_ffn():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                     max_position_embeddings=16)
    model = BertModel(cfg)
    ids = torch.randint(0, 50, (3, 10))
    pair = _check_surgery(model, "encoder.layer.1.intermediate.intermediate_act_fn", ids, forward=lambda: model(ids))
    assert (pair.incoming_name, pair.outgoing_name) == ("encoder.layer.1.intermediate.dense", "encoder.layer.1.output.dense")
    # HF init: N(0, initializer_range) for the redrawn rows.
    mask = torch.ones(48, dtype=torch.bool)
    recycle_units(pair, mask, None, model, torch.Generator().manual_seed(0))
    assert pair.incoming.weight.std().item() == pytest.approx(cfg.initializer_range, rel=0.1)


def test_cannot_recycle_names_the_reason():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2), nn.ReLU())
    pairs = find_pairs(model, find_layers(model)[0])
    assert "LayerNorm" in pairs["2"] and "between" in pairs["2"]
    assert "last layer" in pairs["4"]
    # Named by hand, the pair is used (the user takes the LayerNorm's shift on themselves).
    pairs = find_pairs(model, find_layers(model)[0], given={"2": ("0", "3")})
    assert isinstance(pairs["2"], RecyclePair)


class _Dying(nn.Module):
    """fc1's bias starts at -3 on inputs in [0, 1) with small weights: most ReLU units never fire."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act1, self.fc2 = nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)
        with torch.no_grad():
            self.fc1.weight.uniform_(-0.1, 0.1)
            self.fc1.bias.fill_(-3.0)
            self.fc1.bias[:4] = 1.0

    def forward(self, x):
        return self.fc2(self.act1(self.fc1(x)))


def _train(w, model, opt, steps, x):
    for _ in range(steps):
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss=loss.detach())


def test_command_applied_at_next_flush_and_dead_rate_drops(tmp_path):
    torch.manual_seed(0)
    model, x = _Dying(), torch.rand(64, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    store = RunStore(tmp_path)
    with watch(model, run="dying", log_every=5, runs_dir=tmp_path, verbose=False) as w:
        _train(w, model, opt, 5, x)
        assert w.last["dead/act1"] == pytest.approx(28 / 32)
        assert "fc1 -> fc2" in store.open("dying").meta["layers"]["act1"]["recycle"]
        cmd = store.send_command("dying", "recycle", {"layer": "act1", "dead": True}, command_id="c1")
        assert cmd["state"] == "pending" and not cmd["duplicate"]
        again = store.send_command("dying", "recycle", {"layer": "act1", "dead": True}, command_id="c1")
        assert again["duplicate"] and again["id"] == "c1"
        _train(w, model, opt, 4, x)
        assert store.open("dying").commands()[0]["state"] == "pending"  # no per-step polling
        _train(w, model, opt, 1, x)  # the flush at step 10 applies it
        r = store.open("dying")
        (ev,) = r.events()
        assert (ev["step"], ev["kind"], ev["layer"], ev["units"], ev["command_id"]) == (10, "recycle", "act1", 28, "c1")
        assert "optimizer state reset" in ev["reason"]
        (c,) = r.commands()
        assert (c["state"], c["applied_step"]) == ("applied", 10)
        # The recycled units' Adam moments were zeroed at the recycle, so they move only from fresh gradients.
        _train(w, model, opt, 5, x)
        assert w.last["dead/act1"] < 0.5
    last = store.summary("dying")
    assert last["status"] == "finished" and last["last"]["recycled/act1"] == 28


def test_commands_refused_clearly(tmp_path):
    torch.manual_seed(0)
    model, x = _Dying(), torch.rand(16, 8)
    opt = torch.optim.Adam(model.parameters())
    store = RunStore(tmp_path)
    with watch(model, run="r", log_every=2, runs_dir=tmp_path, verbose=False) as w:
        _train(w, model, opt, 2, x)
        with pytest.raises(UserError, match="no layer 'fc9'"):
            store.send_command("r", "recycle", {"layer": "fc9"})
        with pytest.raises(UserError, match="unknown command"):
            store.send_command("r", "explode", {"layer": "act1"})
        store.send_command("r", "recycle", {"layer": "act1", "tau": 7}, command_id="bad-tau")
        store.send_command("r", "recycle", {"layer": "act1"}, command_id="late")
        _train(w, model, opt, 1, x)  # no flush: "late" stays pending
        w.flush()
        ev = {e["command_id"]: e for e in store.open("r").events()}
        assert ev["bad-tau"]["kind"] == "refused" and "tau must be in [0, 1]" in ev["bad-tau"]["reason"]
        assert ev["late"]["kind"] == "recycle"
        store.send_command("r", "recycle", {"layer": "act1"}, command_id="never")
    ev = {e["command_id"]: e for e in store.open("r").events()}
    assert ev["never"]["kind"] == "refused" and "run ended (finished)" in ev["never"]["reason"]
    with pytest.raises(UserError, match="is finished"):
        store.send_command("r", "recycle", {"layer": "act1"})


def test_scheduled_recycle_every(tmp_path):
    torch.manual_seed(0)
    model, x = _Dying(), torch.rand(32, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with watch(model, run="sched", log_every=5, runs_dir=tmp_path, verbose=False, recycle_every=10, recycle_tau=0.0) as w:
        _train(w, model, opt, 30, x)
    evs = RunStore(tmp_path).open("sched").events()
    assert [e["step"] for e in evs] == [10, 20, 30]
    assert evs[0]["units"] == 28 and "scheduled every 10 steps" in evs[0]["reason"]


def test_recycle_cli(tmp_path, capsys):
    from actlab.cli import main

    torch.manual_seed(0)
    model, x = _Dying(), torch.rand(16, 8)
    opt = torch.optim.Adam(model.parameters())
    with watch(model, run="cli", log_every=2, runs_dir=tmp_path, verbose=False) as w:
        _train(w, model, opt, 2, x)
        assert main(["runs", "recycle", "cli", "--layer", "act1", "--dead", "--runs-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "queued" in out and "next flush" in out
        _train(w, model, opt, 2, x)
    assert main(["runs", "events", "cli", "--runs-dir", str(tmp_path)]) == 0
    assert "act1" in capsys.readouterr().out
    assert main(["runs", "recycle", "cli", "--layer", "act1", "--runs-dir", str(tmp_path)]) == 2
    assert "is finished" in capsys.readouterr().err
    assert main(["runs", "recycle", "cli", "--layer", "act1", "--tau", "2", "--runs-dir", str(tmp_path)]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--recycle-every", "0"], "argument --recycle-every"),
    (["--recycle-tau", "2"], "argument --recycle-tau"),
    (["--recycle-tau", "nan"], "argument --recycle-tau"),
    (["--branch-from", "../other"], "argument --branch-from"),
    (["--branch-from", "nosuch"], "no checkpoint at"),
    (["--branch-from", "nosuch", "--resume", "nosuch"], "pick one"),
])
def test_train_mnist_recycle_and_branch_flags_refuse_bad_values(tmp_path, capsys, argv, message):
    from actlab.cli import main

    rc = main(["train", "mnist", "--runs-dir", str(tmp_path / "runs"), "--checkpoints-dir", str(tmp_path / "ck"),
               "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing written


def test_recycle_mask_of_the_wrong_width_is_refused():
    model = MLP(4, [8], 2, "relu")
    pair = find_pairs(model, find_layers(model)[0])["act1"]
    with pytest.raises(ValueError, match="mask has 5 units, fc1 has 8 outputs"):
        recycle_units(pair, torch.zeros(5, dtype=torch.bool))


def test_launcher_refuses_a_bad_branch_source_or_recycle_value():
    from actlab.train import launcher

    with pytest.raises(UserError, match="invalid run name"):
        launcher.build_argv("mnist", {"branch_from": "../x"})
    with pytest.raises(UserError, match="recycle_every=0"):
        launcher.build_argv("mnist", {"recycle_every": 0})
    with pytest.raises(UserError, match="recycle_tau"):
        launcher.build_argv("mnist", {"recycle_tau": "nan"})
