"""Recycling by any dormancy definition: the optimizer-state conventions (core/watcher/recycle.py)."""
import pytest
import torch
from actlab.watcher import find_layers
from actlab.watcher.recycle import find_pairs, recycle_units
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


# ---------------------------------------------------------------- through the watcher and the CLI
import json  # noqa: E402

from actlab.cli import main as cli  # noqa: E402
from actlab.errors import UserError  # noqa: E402
from actlab.store.runs import RunStore  # noqa: E402
from actlab.watcher import watch  # noqa: E402
from actlab.watcher.dormancy_plugin import DormancyPlugin  # noqa: E402


def _loop(w, model, opt, n, gen):
    for _ in range(n):
        x = torch.randn(32, 6, generator=gen)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss=loss.detach())


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        m[0].bias[:12] = -5.0  # 12 units dead from the start
    return m


def test_scheduled_recycle_by_grama_with_audit(runs_dir, capsys):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    with watch(m, run="sched", runs_dir=runs_dir, log_every=5, verbose=False, optimizer=opt,
               recycle_every=10, recycle_by="grama", dormancy={"every": 1}) as w:
        assert any(isinstance(p, DormancyPlugin) for p in w.plugins.plugins)
        _loop(w, m, opt, 40, gen)
    assert cli(["runs", "events", "sched", "--runs-dir", str(runs_dir), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    rec = [e for e in events if e["kind"] == "recycle"]
    assert rec and all(e["details"]["by"] == "grama" and e["details"]["convention"] == "redo" for e in rec)
    assert rec[0]["step"] == 10 and rec[0]["units"] >= 12  # the dead units get no gradient: GraMa flags them
    first = rec[0]["audit"]
    assert len(first) >= 2 and all(0.0 <= f <= 1.0 for f in first)
    audits = [e for e in events if e["kind"] == "recycle_audit" and e["details"]["of_step"] == 10]
    assert [a["details"]["flagged_again"] for a in audits] == first


def test_recycle_by_needs_the_plugin_and_cbp_too(runs_dir):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    store = RunStore(runs_dir)
    with watch(m, run="plain", runs_dir=runs_dir, log_every=5, verbose=False, optimizer=opt) as w:
        _loop(w, m, opt, 5, gen)
        store.send_command("plain", "recycle", {"layer": "1", "by": "utility"}, command_id="u")
        store.send_command("plain", "recycle", {"layer": "1", "dead": True, "convention": "cbp"}, command_id="c")
        store.send_command("plain", "recycle", {"layer": "1", "by": "bogus"}, command_id="b")
        _loop(w, m, opt, 5, gen)
    with store.open("plain") as r:
        cmds = {c["id"]: c for c in r.commands()}
    assert cmds["u"]["state"] == "refused" and "needs the dormancy plug-in" in cmds["u"]["result"]
    assert cmds["c"]["state"] == "refused" and "cbp" in cmds["c"]["result"]
    assert cmds["b"]["state"] == "refused" and "unknown definition 'bogus'" in cmds["b"]["result"]


def test_cli_recycle_by_grama_cbp_on_a_live_run(runs_dir, capsys):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    with watch(m, run="live", runs_dir=runs_dir, log_every=5, verbose=False, optimizer=opt, dormancy=True) as w:
        _loop(w, m, opt, 5, gen)
        assert cli(["runs", "recycle", "live", "--layer", "1", "--by", "grama", "--convention", "cbp",
                    "--runs-dir", str(runs_dir)]) == 0
        assert "grama units, cbp convention" in capsys.readouterr().out
        bias = m[2].bias.detach().clone()
        _loop(w, m, opt, 30, gen)
    with RunStore(runs_dir).open("live") as r:
        ev = next(e for e in r.events() if e["kind"] == "recycle")
    d = ev["details"]
    assert ev["step"] == 10 and d["by"] == "grama" and d["convention"] == "cbp" and d["mean_moved_to_bias"] is True
    assert d["step_counts_reset"] == 3 and "cbp convention" in ev["reason"]
    assert not torch.equal(m[2].bias, bias)
    assert cli(["runs", "events", "live", "--runs-dir", str(runs_dir)]) == 0
    assert "flagged again:" in capsys.readouterr().out


def test_bad_recycle_settings(runs_dir, capsys):
    m = _model()
    with pytest.raises(UserError, match="^recycle_by: unknown definition 'overactive'"):
        watch(m, run="bad", runs_dir=runs_dir, verbose=False, recycle_by="overactive")
    with pytest.raises(UserError, match="^recycle_convention"):
        watch(m, run="bad", runs_dir=runs_dir, verbose=False, recycle_convention="adam")
    with pytest.raises(UserError, match="^tau must be in"):
        watch(m, run="bad", runs_dir=runs_dir, verbose=False, dormancy={"tau": 3})
    assert cli(["runs", "recycle", "x", "--layer", "1", "--by", "sometimes"]) == 2
    assert "argument --by: invalid choice" in capsys.readouterr().err
