"""watch(model): values on hand-built layers, the unit axis, padding, eval passes, status, hooks removed."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from actlab import UserError
from actlab.activations import RELU_LIKE, derivatives, identify, names, zones
from actlab.store.runs import RunStore
from actlab.watcher import WatchPlugin, watch

ROOT = Path(__file__).resolve().parent.parent


def scalars(runs_dir, run):
    df, _ = RunStore(runs_dir).open(run).scalars()
    return df


def last(runs_dir, run):
    return RunStore(runs_dir).open(run).last()


class HalfDead(nn.Module):
    """Linear whose bias makes exactly half the units negative on every input (inputs are tiny)."""

    def __init__(self, units=8, act=None):
        super().__init__()
        self.fc = nn.Linear(4, units)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([-1.0, 1.0] * (units // 2)))
        self.act = act or nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


def test_a_layer_built_half_dead_reads_half(runs_dir):
    m = HalfDead()
    with watch(m, run="half", log_every=2, verbose=False) as w:
        for _ in range(4):
            m(torch.randn(5, 4))
            w.step(loss=torch.tensor(1.0))
    d = scalars(runs_dir, "half")
    dead = d[d.key == "dead/act"]
    assert dead.step.tolist() == [2, 4] and dead.value.tolist() == [0.5, 0.5]
    # Dead units output 0, live ones 1: half the outputs are zero, and the dead half is dormant.
    assert d[d.key == "zero_frac/act"].value.tolist() == [0.5, 0.5]
    assert d[d.key == "dormant/act"].value.tolist() == [0.5, 0.5]
    assert d[d.key == "loss/train"].value.tolist() == [1.0, 1.0]
    r = RunStore(runs_dir).open("half")
    assert r.status().state == "finished"
    assert r.meta["layers"]["act"] == {"activation": "relu", "params": {}, "definition": "dead", "dead": True,
                                       "class": "ReLU",
                                       "recycle": "cannot recycle: no Linear/Conv after the activation (it is the "
                                                  "model's last layer)"}
    assert r.config["watch"]["hooked"][0]["name"] == "act"


def test_tau_dormant_on_constructed_units(runs_dir):
    """|output| means per unit 0.9, 0.9, 0.9, 0.045, 0.18 -> layer mean 0.585; scores 1.54, .., 0.077, 0.31.
    tau=0.1 -> 1 of 5 dormant; tau=0.5 -> 2 of 5; tau=0 -> none (no unit is exactly 0)."""
    scale = torch.tensor([0.9, 0.9, 0.9, 0.045, 0.18])

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.Tanh()

        def forward(self, x):
            # atanh so that tanh returns exactly +-scale: the sign alternates, |output| does not.
            return self.act(torch.atanh(scale * torch.sign(x)))

    expected = {}
    for tau in (0.0, 0.1, 0.5):
        m = Fixed()
        run = f"tau{tau}"
        with watch(m, run=run, log_every=3, tau=tau, verbose=False) as w:
            for _ in range(3):
                m(torch.randn(16, 5))
                w.step()
        expected[tau] = last(runs_dir, run)["dormant/act"]
        score = RunStore(runs_dir).open(run).unit_activity("score/act")[-1]["values"]
        assert score == pytest.approx((scale / scale.mean()).tolist(), abs=1e-3)
    assert expected == {0.0: 0.0, 0.1: pytest.approx(0.2), 0.5: pytest.approx(0.4)}
    # tanh has no flat region: dead/ is defined but reads 0.
    assert last(runs_dir, "tau0.1")["dead/act"] == 0.0


def test_conv_channels_are_units_and_a_subclass_falls_back(runs_dir):
    class MyReLU(nn.ReLU):
        pass

    conv = nn.Conv2d(1, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-1.0, 2.0, -3.0, 4.0]))
    m = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(4, 4, 1), MyReLU())
    with watch(m, run="cnn", log_every=1, verbose=False) as w:
        m(torch.randn(2, 1, 6, 6))
        w.step()
    v = last(runs_dir, "cnn")
    assert v["dead/1"] == 0.5  # channels 0 and 2 are negative at every pixel
    assert "dead/3" not in v and "dormant/3" in v and "zero_frac/3" in v
    act = RunStore(runs_dir).open("cnn").unit_activity("1")[-1]["values"]
    assert act == [0.0, 1.0, 0.0, 1.0]  # one value per channel, not per pixel
    hooked = {h["name"]: h for h in RunStore(runs_dir).open("cnn").config["watch"]["hooked"]}
    assert hooked["3"]["dead"] is False and "subclass of ReLU" in hooked["3"]["reason"]


def test_tokens_are_samples_and_padding_does_not_count(runs_dir):
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x, attention_mask=None):
            return self.act(x)

    x = -torch.ones(2, 3, 4)
    x[:, :, 0] = 1.0  # unit 0 alive on every real token
    x[1, 2, 1] = 5.0  # unit 1 alive only on a padding token
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    m = Tok()
    with watch(m, run="pad", log_every=1, verbose=False) as w:
        m(x, attention_mask=mask)
        w.step()
    assert last(runs_dir, "pad")["dead/act"] == 0.75
    with watch(m, run="nopad", log_every=1, verbose=False) as w:
        m(x)
        w.step()
    assert last(runs_dir, "nopad")["dead/act"] == 0.5


def test_eval_passes_and_no_grad_do_not_count_but_train_under_no_grad_does(runs_dir):
    m = HalfDead()
    with watch(m, run="ev", log_every=2, verbose=False) as w:
        m.eval()
        with torch.no_grad():
            m(torch.randn(5, 4))
        m.train()
        with torch.no_grad():  # e.g. a rollout in train mode: counts
            m(torch.randn(5, 4))
        w.step()
        m.fc.bias.data.fill_(1.0)  # everyone alive now, but only in an eval pass
        m.eval()
        m(torch.randn(5, 4))
        m.train()
        w.step()
    assert last(runs_dir, "ev")["dead/act"] == 0.5
    assert not m.act._forward_hooks and not m._forward_pre_hooks  # hooks gone: model as it was


def test_failed_block_marks_the_run_and_removes_hooks(runs_dir):
    m = HalfDead()
    with pytest.raises(RuntimeError, match="boom"), watch(m, run="bad", log_every=10, verbose=False) as w:
        m(torch.randn(5, 4))
        w.step()
        raise RuntimeError("boom")
    st = RunStore(runs_dir).open("bad").status()
    assert st.state == "failed" and "RuntimeError: boom" in st.reason
    assert not m.act._forward_hooks


def test_functional_relu_is_reported_and_the_explicit_form_works(runs_dir, capsys):
    class Func(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = HalfDead().fc

        def forward(self, x):
            return torch.nn.functional.relu(self.fc(x))

    m = Func()
    w = watch(m, run="f0", log_every=1)
    assert "F.relu" in capsys.readouterr().err or "functional.relu" in json.dumps(w.table)
    assert w.table["hooked"] == [] and any("modules=" in n for n in w.table["notes"])
    w.close()
    with watch(m, run="f1", log_every=1, modules={"fc": "relu"}, verbose=False) as w:
        m(torch.randn(3, 4))
        w.step()
    assert last(runs_dir, "f1")["dead/fc"] == 0.5 and w.layers["fc"].role == "pre"


def test_bad_arguments_are_clear_errors(runs_dir):
    m = HalfDead()
    with pytest.raises(UserError, match="no submodule 'nope'"):
        watch(m, modules={"nope": "relu"})
    with pytest.raises(UserError, match="unknown activation"):
        watch(m, modules={"fc": "swishy"})
    with pytest.raises(UserError, match="log_every"):
        watch(m, log_every=0)
    with pytest.raises(UserError, match="tau"):
        watch(m, tau=2)
    with pytest.raises(UserError, match="may not contain"):
        watch(m, run="../x")
    assert RunStore(runs_dir).names() == []
    watch(m, run="taken", verbose=False).close()
    with pytest.raises(UserError, match="already exists"):
        watch(m, run="taken")
    assert not m.act._forward_hooks  # nothing left behind by the refused run


def test_grad_norms_from_the_optimizer_even_when_grads_are_zeroed_before_step(runs_dir):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(m.parameters(), lr=0.0)  # lr 0: the weights, hence grads, stay comparable
    x = torch.randn(6, 3)
    with watch(m, run="g", log_every=2, verbose=False) as w:
        for _ in range(2):
            m(x).pow(2).sum().backward()
            expect = {n: torch.linalg.vector_norm(p.grad).item() for n, p in m.named_parameters()}
            opt.step()
            opt.zero_grad()
            w.step()
    v = last(runs_dir, "g")
    for n, e in expect.items():
        assert v[f"grad_norm/{n}"] == pytest.approx(e, rel=1e-5)


def test_plugins_see_typed_records_between_steps(runs_dir):
    m = HalfDead()
    seen = []

    class Seen(WatchPlugin):
        def on_flush(self, watcher, record):
            seen.append((record.step, record.layers["act"].dead, record.scalars["dead/act"],
                         watcher.layers["act"].module is m.act, watcher.layers["act"].activation))

    with watch(m, run="cb", log_every=2, verbose=False, plugins=[Seen()]) as w:
        for _ in range(4):
            m(torch.randn(2, 4))
            w.step()
    assert seen == [(2, 0.5, 0.5, True, "relu"), (4, 0.5, 0.5, True, "relu")]


def test_window_spans_flushes_until_closed_and_revived_counts(runs_dir):
    m = HalfDead()
    with watch(m, run="win", log_every=1, window="manual", verbose=False) as w:
        m(torch.randn(2, 4)); w.step()
        m.fc.bias.data.copy_(torch.tensor([1.0, -1.0] * 4))  # the other half now
        m(torch.randn(2, 4)); w.step()
        w.end_window()
        m(torch.randn(2, 4)); w.step()
    d = scalars(runs_dir, "win")
    assert d[d.key == "dead/act"].value.tolist() == [0.5, 0.0, 0.5]
    assert d[d.key == "revived/act"].value.tolist() == [0.0]  # nobody was dead in window 1


def test_relu_like_set_matches_the_registry_curves():
    x = torch.linspace(-6, 6, 4001, dtype=torch.float64)  # the explorer's range (far out, tanh saturates to 1.0 exactly)
    flat = {n for n in names(vector=False) if zones(x, derivatives(n, x)[1])["dead"]}
    assert flat == RELU_LIKE & set(names())


def test_every_torch_and_hf_activation_class_is_identified():
    import transformers.activations as hf

    torch_classes = [nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(), nn.PReLU(), nn.RReLU(), nn.ELU(), nn.CELU(), nn.SELU(),
                     nn.GELU(), nn.SiLU(), nn.Mish(), nn.Hardswish(), nn.Hardsigmoid(), nn.Hardtanh(), nn.Sigmoid(),
                     nn.Tanh(), nn.Softplus(), nn.Softsign(), nn.Tanhshrink(), nn.LogSigmoid()]
    for m in torch_classes:
        assert identify(m).kind == "exact", type(m)
    assert identify(nn.GELU(approximate="tanh")).activation == "gelu_tanh"
    assert identify(hf.ACT2FN["gelu"]).activation == "gelu"
    assert identify(hf.ACT2FN["gelu_new"]).activation == "gelu_tanh"
    assert identify(hf.ACT2FN["quick_gelu"]).activation == "swish"
    assert identify(hf.ACT2FN["quick_gelu"]).params == {"beta": 1.702}
    for key in hf.ACT2CLS:
        ident = identify(hf.ACT2FN[key])
        assert ident is not None and ident.kind in ("exact", "fallback", "skip"), key
    assert identify(nn.Softmax(-1)).kind == "skip" and identify(nn.Linear(2, 2)) is None
    # the map's f' really is the module's: QuickGELU == swish(1.702)
    x = torch.linspace(-4, 4, 101)
    y, _, _ = derivatives("swish", x.double(), beta=1.702)
    assert torch.allclose(hf.ACT2FN["quick_gelu"](x).double(), y, atol=1e-5)


def test_bf16_autocast_on_cpu(runs_dir):
    m = HalfDead(act=nn.GELU())
    with watch(m, run="bf", log_every=1, verbose=False) as w:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m(torch.randn(4, 4))
        w.step()
    v = last(runs_dir, "bf")
    # |GELU(-1)| = 0.159, GELU(1) = 0.841: scores 0.32 and 1.68, so nobody is dormant at tau 0.1.
    assert v["dormant/act"] == 0.0 and v["dead/act"] == 0.0
    score = RunStore(runs_dir).open("bf").unit_activity("score/act")[-1]["values"]
    g_neg, g_pos = 0.1587, 0.8413
    assert score[:2] == pytest.approx([2 * g_neg / (g_neg + g_pos), 2 * g_pos / (g_neg + g_pos)], rel=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_dead(runs_dir):
    m = HalfDead().cuda()
    with watch(m, run="cuda", log_every=2, verbose=False) as w:
        for _ in range(2):
            m(torch.randn(5, 4, device="cuda"))
            w.step(loss=torch.ones((), device="cuda"))
    assert last(runs_dir, "cuda")["dead/act"] == 0.5


def test_runs_show_json_has_the_keys_and_status(runs_dir):
    m = HalfDead()
    with watch(m, run="cli", log_every=1, verbose=False) as w:
        m(torch.randn(2, 4))
        w.step(loss=0.5)
    r = subprocess.run([sys.executable, "-m", "actlab", "runs", "show", "cli", "--runs-dir", str(runs_dir), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    out = json.loads(r.stdout)
    assert out["status"] == "finished" and out["last"]["dead/act"] == 0.5 and out["last"]["loss/train"] == 0.5


def test_step_scalars_are_interval_means_whatever_mix_of_tensors_and_numbers(tmp_path):
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    with watch(m, run="means", runs_dir=tmp_path, log_every=4, verbose=False) as w:
        w.step(loss=torch.tensor(1.0), acc=0.5)
        w.step(loss=2.0, acc=torch.tensor(0.7))
        w.step(loss=torch.tensor([3.0, 5.0]), acc=0.6)  # a batch of losses counts as its mean
        rec = w.step(loss=torch.tensor(8.0, dtype=torch.float64), acc=None)
    assert rec.scalars["loss/train"] == pytest.approx((1 + 2 + 4 + 8) / 4)
    assert rec.scalars["acc"] == pytest.approx((0.5 + 0.7 + 0.6) / 3)


def test_a_loss_buffer_updated_in_place_is_read_at_each_step(tmp_path):
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    buf = torch.zeros(())
    with watch(m, run="buf", runs_dir=tmp_path, log_every=3, verbose=False) as w:
        for v in (1.0, 2.0, 6.0):
            buf.fill_(v)  # the caller's own tensor, reused every step
            rec = w.step(loss=buf)
    assert rec.scalars["loss/train"] == pytest.approx(3.0)
