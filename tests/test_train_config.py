"""core/train/config.py and session.py: one declaration per option; one precedence; one ending."""
import argparse

import pytest

from actlab import UserError
from actlab.cli import build_parser
from actlab.train import launcher, session
from actlab.train.config import BIENCODER, MNIST, TASKS, form_value
from actlab.train.loop import NonFiniteLoss, save_checkpoint


@pytest.mark.parametrize("task", ["mnist", "biencoder"])
def test_every_form_field_is_a_launchable_flag_that_the_cli_parses(task):
    spec = TASKS[task]
    for o in spec.form_options():
        assert o.launch is not None and o.flag, o.key
    launchable = spec.launch_options()
    assert launchable and all(o.flag for o in launchable.values())
    parser = build_parser(["train", task])
    flags = {s for a in parser._subparsers._group_actions[0].choices["train"]._subparsers._group_actions[0]
             .choices[task]._actions for s in a.option_strings}
    assert {o.flag for o in launchable.values()} <= flags


@pytest.mark.parametrize("value", [0, -3])
def test_one_rule_for_recycle_every_in_the_flag_the_dict_and_the_form(value, capsys):
    assert build_parser(["train", "mnist"]) is not None
    from actlab.cli import main

    assert main(["train", "mnist", "--recycle-every", str(value)]) == 2
    assert "argument --recycle-every" in capsys.readouterr().err
    with pytest.raises(UserError, match="--recycle-every: expected a positive integer"):
        MNIST.validate({"recycle_every": value})
    with pytest.raises(UserError, match="recycle_every"):
        launcher.build_argv("mnist", {"recycle_every": value})


def test_dict_values_are_checked_by_the_flag_types():
    MNIST.validate({"epochs": 2.0, "hidden": [8, 4], "optimizer": "sgd", "dropout": 0.5})
    for bad, msg in [({"optimizer": "lion"}, "--optimizer 'lion': expected one of adam, adamw, sgd"),
                     ({"hidden": [8, 0]}, "--hidden: expected a positive integer"),
                     ({"hidden": "64"}, "--hidden: expected one or more values"),
                     ({"epochs": True}, "--epochs"), ({"lr": float("nan")}, "--lr"),
                     ({"bogus": 1}, "unknown mnist option")]:
        with pytest.raises(UserError, match=msg):
            MNIST.validate(bad)
    with pytest.raises(UserError, match="--test-fraction"):
        BIENCODER.validate({"test_fraction": 1.0})


def test_form_values_become_launcher_fields():
    by = MNIST.by_key
    assert form_value(by["lr"], "  ") is None and form_value(by["lr"], " 0.1 ") == "0.1"
    assert form_value(by["max_steps"], 0) is None and form_value(by["max_steps"], 7) == 7
    assert form_value(by["act_params"], "alpha=0.1, beta=2") == {"alpha": "0.1", "beta": "2"}
    with pytest.raises(UserError, match="expected K=V"):
        form_value(by["act_params"], "alpha")
    assert form_value(BIENCODER.by_key["freeze_backbone"], 1) is True


def test_ablation_flags_leave_out_what_the_grid_sets():
    p = argparse.ArgumentParser()
    from actlab.cli.train import add_biencoder_args

    add_biencoder_args(p, ablation=True)
    flags = {s for a in p._actions for s in a.option_strings}
    assert {"--epochs", "--lr", "--max-steps", "--backbone", "--no-feature-cache"} <= flags
    assert not flags & {"--name", "--seed", "--resume", "--head"}


def test_session_precedence(tmp_path):
    ck = tmp_path / "ck"
    saved = {**MNIST.defaults(), "lr": 0.5, "hidden": [8], "max_steps": 4, "name": "old"}
    save_checkpoint(ck / "old" / "last.pt", {"config": saved, "step": 3, "epoch": 0})
    base = {"runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(ck)}
    fresh = session.start(MNIST, {**base, "preset": "stress", "init_bias": -2.0})
    assert fresh.cfg["lr"] == 2e-2 and fresh.cfg["init_bias"] == -2.0 and "preset" not in fresh.cfg  # given > preset
    resumed = session.start(MNIST, {**base, "resume": "old", "epochs": 3})
    assert (resumed.cfg["name"], resumed.cfg["lr"], resumed.cfg["hidden"], resumed.cfg["epochs"]) == ("old", 0.5, [8], 3)
    assert resumed.cfg["max_steps"] == 4  # saved > default
    assert session.start(MNIST, {**base, "resume": "old", "max_steps": None}).cfg["max_steps"] is None  # given > saved
    branch = session.start(MNIST, {**base, "branch_from": "old", "lr": 0.1})
    assert branch.cfg["lr"] == 0.1 and branch.cfg["name"].startswith("old-branch-")
    assert branch.branch_of == {"run": "old", "step": 3}
    with pytest.raises(UserError, match="pick one"):
        session.start(MNIST, {**base, "resume": "old", "branch_from": "old"})


def test_biencoder_resume_changes_only_how_long_and_where(tmp_path):
    ck = tmp_path / "ck"
    saved = {**BIENCODER.defaults(), "head": "without_layernorm", "lr": 1e-3, "name": "b"}
    save_checkpoint(ck / "b" / "last.pt", {"config": saved, "step": 5, "epoch": 1})
    cfg = session.start(BIENCODER, {"resume": "b", "head": "with_relu", "epochs": 2, "checkpoints_dir": str(ck)}).cfg
    assert (cfg["head"], cfg["lr"], cfg["epochs"], cfg["name"]) == ("without_layernorm", 1e-3, 2, "b")


class FakeWatcher:
    closed = False

    def close(self, state, reason=None):
        self.closed, self.state, self.reason = True, state, reason


def test_lifecycle_endings():
    w = FakeWatcher()
    with session.lifecycle(w) as end:
        pass
    assert (w.state, end.state) == ("finished", "finished")
    w = FakeWatcher()
    with session.lifecycle(w) as end:
        end.stop.requested = True
    assert (w.state, w.reason) == ("stopped", session.STOP_REASON)
    w = FakeWatcher()
    with session.lifecycle(w) as end:  # the MNIST trainer: a NaN loss ends the run, quietly
        raise NonFiniteLoss("loss became nan at step 3")
    assert (w.state, w.reason, end.state) == ("failed", "loss became nan at step 3", "failed")
    w = FakeWatcher()
    with pytest.raises(NonFiniteLoss), session.lifecycle(w, raise_nonfinite=True):
        raise NonFiniteLoss("loss became inf at step 1")
    assert w.state == "failed"
    w = FakeWatcher()
    with pytest.raises(RuntimeError), session.lifecycle(w):
        raise RuntimeError("boom")
    assert (w.state, w.reason) == ("failed", "RuntimeError: boom")
    w = FakeWatcher()
    with pytest.raises(KeyboardInterrupt), session.lifecycle(w):
        raise KeyboardInterrupt
    assert w.state == "stopped"
