"""MNIST trainer end to end on the bundled digits: keys, status, checkpoints, resume, CLI errors."""
import pytest
import torch

from actlab import UserError
from actlab.cli import main
from actlab.store.runs import RunStore
from actlab.train.loop import load_checkpoint, save_checkpoint
from actlab.train.mnist import PRESETS, train_mnist

# 4,000 training digits at batch 500: 8 steps an epoch, so a run of a few epochs takes seconds.
TINY = dict(hidden=[32], batch_size=500, log_every=4, progress=False, probe_size=200)


def _cfg(tmp_path, **kw):
    return {**TINY, "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ckpt"), **kw}


def test_end_to_end_writes_every_key_and_finishes(tmp_path):
    name = train_mnist(_cfg(tmp_path, name="e2e", epochs=2))
    assert name == "e2e"
    r = RunStore(tmp_path / "runs").open("e2e")
    assert r.status().state == "finished"
    df, _ = r.scalars()
    keys = set(df.key)
    for k in ["loss/train", "acc/train", "loss/test", "acc/test", "dead/act1", "zero_frac/act1", "revived/act1",
              "dead_exact/act1", "grad_norm/fc1.weight", "grad_norm/out.bias", "lr", "samples_per_s"]:
        assert k in keys, k
    assert sorted(df[df.key == "loss/train"].step) == [4, 8, 12, 16]
    assert df[df.key == "acc/test"].value.iloc[-1] > 0.5  # it learns
    assert df[df.key == "epoch"].empty and df[df.key == "loss/test"].epoch.tolist() == [1.0, 2.0]
    assert len(r.histograms("pre/act1")) == 4 and len(r.unit_activity("act1")[0]["values"]) == 32
    assert r.config["hidden"] == [32]


def test_checkpoint_is_a_plain_dict_loadable_with_weights_only(tmp_path):
    train_mnist(_cfg(tmp_path, name="ck", max_steps=8))
    path = tmp_path / "ckpt" / "ck" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == {"model", "optimizer", "config", "step", "epoch"}
    assert ckpt["step"] == 8 and ckpt["epoch"] == 1 and ckpt["config"]["name"] == "ck"
    assert ckpt["model"]["fc1.weight"].shape == (32, 784)
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temp file


def test_resume_continues_step_and_optimizer_state(tmp_path):
    train_mnist(_cfg(tmp_path, name="res", epochs=1))
    before = load_checkpoint(tmp_path / "ckpt" / "res" / "last.pt")
    assert before["step"] == 8
    train_mnist(_cfg(tmp_path, resume="res", epochs=2))
    after = load_checkpoint(tmp_path / "ckpt" / "res" / "last.pt")
    assert after["step"] == 16 and after["epoch"] == 2
    # Adam's per-parameter step counter carried over: 8 + 8, not a fresh 8.
    assert int(after["optimizer"]["state"][0]["step"]) == 16
    df, _ = RunStore(tmp_path / "runs").open("res").scalars()
    steps = df[df.key == "loss/train"].step.tolist()
    assert steps == [4, 8, 12, 16]


def test_resume_mid_epoch_replays_the_same_batches(tmp_path):
    """A run stopped at step 4 and resumed ends with the same weights as an uninterrupted one."""
    train_mnist(_cfg(tmp_path, name="full", epochs=1))
    train_mnist(_cfg(tmp_path, name="half", epochs=1, max_steps=4))
    assert load_checkpoint(tmp_path / "ckpt" / "half" / "last.pt")["epoch"] == 0
    train_mnist(_cfg(tmp_path, resume="half", max_steps=None))
    a = load_checkpoint(tmp_path / "ckpt" / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "ckpt" / "half" / "last.pt")["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_stress_preset_kills_relu_but_not_leaky_relu(tmp_path):
    dead = {}
    for act in ("relu", "leaky_relu"):
        train_mnist(_cfg(tmp_path, **PRESETS["stress"], name=act, activation=act, hidden=[128], batch_size=64,
                         max_steps=60, log_every=30))
        df, _ = RunStore(tmp_path / "runs").open(act).scalars()
        dead[act] = df[df.key == "dead_exact/act1"].value.iloc[-1]
    assert dead["relu"] > 0.3
    assert dead["leaky_relu"] == 0.0


def test_cli_runs_and_prints_status(tmp_path, capsys):
    rc = main(["train", "mnist", "--max-steps", "3", "--hidden", "16", "--batch-size", "100", "--log-every", "3",
               "--runs-dir", str(tmp_path / "runs"), "--checkpoints-dir", str(tmp_path / "ck"), "--name", "cli",
               "--activation", "leaky_relu", "--param", "alpha=0.1", "--no-progress"])
    assert rc == 0
    assert "run cli: finished" in capsys.readouterr().out
    cfg = RunStore(tmp_path / "runs").open("cli").config
    assert cfg["activation"] == "leaky_relu" and cfg["act_params"] == {"alpha": 0.1} and cfg["max_steps"] == 3


@pytest.mark.parametrize("args,msg", [
    (["--activation", "nope"], "unknown activation"),
    (["--param", "alpha"], "KEY=VALUE"),
    (["--activation", "leaky_relu", "--param", "alpha=9"], "outside"),
    (["--lr", "-1"], "--lr"),
    (["--epochs", "0"], "--epochs"),
    (["--name", "../x"], "may not contain"),
    (["--resume", "missing"], "no checkpoint"),
    (["--device", "tpu"], "--device"),
    (["--data", "full", "--data-dir", "/nonexistent/dir"], "not a folder"),
])
def test_cli_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, args, msg):
    runs = tmp_path / "runs"
    rc = main(["train", "mnist", "--runs-dir", str(runs), "--checkpoints-dir", str(tmp_path / "ck"), "--no-progress"] + args)
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1
    assert RunStore(runs).names() == []


def test_existing_run_name_is_refused_and_kept(tmp_path):
    train_mnist(_cfg(tmp_path, name="dup", max_steps=2))
    n = len(RunStore(tmp_path / "runs").open("dup").scalars()[0])
    with pytest.raises(UserError, match="already exists"):
        train_mnist(_cfg(tmp_path, name="dup", max_steps=2))
    assert len(RunStore(tmp_path / "runs").open("dup").scalars()[0]) == n


def test_corrupt_checkpoint_is_a_user_error(tmp_path):
    p = tmp_path / "ckpt" / "bad" / "last.pt"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot load checkpoint"):
        train_mnist(_cfg(tmp_path, resume="bad"))
    save_checkpoint(p, {"step": 1})
    assert load_checkpoint(p) == {"step": 1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_compile_run(tmp_path):
    train_mnist(_cfg(tmp_path, name="gpu", device="cuda", bf16=True, compile=True, max_steps=8))
    assert RunStore(tmp_path / "runs").open("gpu").status().state == "finished"


def test_threads_apply_during_training_and_are_restored(tmp_path, monkeypatch):
    import actlab.train.mnist as tm

    seen = []
    orig = tm.evaluate
    monkeypatch.setattr(tm, "evaluate", lambda *a, **k: (seen.append(torch.get_num_threads()), orig(*a, **k))[1])
    before = torch.get_num_threads()
    train_mnist(_cfg(tmp_path, max_steps=2, name="t1", threads=1))
    assert seen == [1] and torch.get_num_threads() == before
    train_mnist(_cfg(tmp_path, max_steps=2, name="t0", threads=0))  # 0: torch's own default, untouched
    assert seen[-1] == before
