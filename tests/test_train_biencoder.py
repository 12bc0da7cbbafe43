import json
import random

import pytest
import torch

from actlab.cli import main
from actlab.store.runs import RunStore

TINY = ["--backbone", "tiny", "--batch-size", "8", "--lr", "1e-3", "--log-every", "2"]


def write_pairs(path, n_topics=12, per_topic=4, seed=0):
    rng = random.Random(seed)
    words = "climate tax school health energy vote war trade art sport food music law data city water".split()
    with open(path, "w") as f:
        for t in range(n_topics):
            for i in range(per_topic):
                w = rng.sample(words, 4)
                f.write(json.dumps({"topic": f"topic{t}", "argument": f"we should ban {w[0]} {w[1]} {t} {i}",
                                    "counter": f"banning {w[0]} hurts {w[2]} {w[3]} {t} {i}"}) + "\n")
    return path


@pytest.fixture(autouse=True)
def checkpoints_dir(tmp_path, monkeypatch):
    d = tmp_path / "checkpoints"
    monkeypatch.setenv("ACTLAB_CHECKPOINTS_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


def test_train_tiny_end_to_end(tmp_path, pairs, capsys, checkpoints_dir):
    rc = main(["train", "biencoder", *TINY, "--data", str(pairs), "--epochs", "2", "--runs-dir", str(tmp_path),
               "--name", "bi", "--head", "with_layernorm_relu", "--pooling", "mean"])
    assert rc == 0
    assert "run bi in" in capsys.readouterr().out
    r = RunStore(tmp_path).open("bi")
    df, _ = r.scalars()
    assert r.status().state == "finished"
    assert r.meta["kind"] == "biencoder" and r.config["head"] == "with_layernorm_relu"
    # 48 pairs over 12 topics: 10 train topics (40 pairs) -> 5 steps of 8 per epoch.
    per_epoch = df[df["epoch"].isin([1.0, 2.0])]
    for key in ("acc/top1", "acc/top5", "acc/top10", "mrr", "loss/train", "ndcg@10/test"):
        rows = per_epoch[per_epoch["key"] == key]
        assert rows["epoch"].tolist() == [1.0, 2.0], key
        assert rows["step"].tolist() == [5, 10]
        assert rows["value"].between(0, 10).all()
    top = {k: per_epoch[per_epoch["key"] == k]["value"].tolist() for k in ("acc/top1", "acc/top5", "acc/top10")}
    assert all(a <= b <= c for a, b, c in zip(*top.values()))  # top-k accuracy grows with k
    # Live loss every --log-every steps inside an epoch; the epoch's last step is the epoch row.
    live = df[(df["key"] == "loss/train") & ~df["epoch"].isin([1.0, 2.0])]
    assert live["step"].tolist() == [2, 4, 6, 8]
    dead = df[df["key"] == "dead/head.2"]
    assert dead["step"].tolist() == [2, 4, 5, 6, 8, 10] and dead["value"].between(0, 1).all()
    ckpt = torch.load(checkpoints_dir / "bi" / "last.pt", weights_only=True)
    assert set(ckpt) >= {"model", "optimizer", "config", "step"} and ckpt["step"] == 10
    assert any(k.startswith("head.") for k in ckpt["model"])


def test_max_steps_stops_early_and_writes_text_log(tmp_path, pairs):
    from actlab.train.biencoder import train_biencoder

    log = tmp_path / "x_seed1.log"
    name = train_biencoder({"backbone": "tiny", "data": str(pairs), "epochs": 5, "batch_size": 8, "max_steps": 7,
                            "runs_dir": str(tmp_path), "name": "short", "text_log": str(log), "checkpoint": False,
                            "head": "linear1,gelu,linear2", "head_dim": 16})
    df, _ = RunStore(tmp_path).open(name).scalars()
    assert df["step"].max() == 7
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["epoch=1", "epoch=2"]
    assert lines[1].startswith("epoch=2 step=7 loss/train=") and " acc/top10=" in lines[1] and " mrr=" in lines[1]


@pytest.mark.parametrize("args, problem", [
    (["--head", "linear1,bogus"], "'bogus' is not"),
    (["--data", "MISSING"], "missing.jsonl: no such file"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer"),
    (["--backbone", "./no/such/folder"], "backbone folder not found"),
])
def test_bad_input_is_one_line_error(tmp_path, pairs, capsys, args, problem):
    args = [a.replace("MISSING", str(tmp_path / "missing.jsonl")) for a in args]
    rc = main(["train", "biencoder", *TINY, "--data", str(pairs), "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2 and problem in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_too_few_pairs_for_a_topic_split(tmp_path):
    p = write_pairs(tmp_path / "few.jsonl", n_topics=2, per_topic=1)
    from actlab import UserError
    from actlab.train.biencoder import train_biencoder

    with pytest.raises(UserError, match="few.jsonl: need at least 2 train and 2 test pairs"):
        train_biencoder({"backbone": "tiny", "data": str(p), "runs_dir": str(tmp_path)})


def test_negatives_are_remined_each_epoch_from_current_embeddings(tmp_path, pairs, monkeypatch):
    import numpy as np

    import actlab.train.biencoder as tb

    calls = []
    real = tb.hard_negatives

    def spy(anchors, candidates, positives, k=1, exclude=None):
        out = real(anchors, candidates, positives, k=k, exclude=exclude)
        calls.append((anchors.copy(), out.copy(), np.asarray(positives)))
        return out

    monkeypatch.setattr(tb, "hard_negatives", spy)
    tb.train_biencoder({"backbone": "tiny", "data": str(pairs), "epochs": 3, "batch_size": 8, "lr": 1e-3,
                        "runs_dir": str(tmp_path), "name": "neg", "checkpoint": False})
    assert len(calls) == 3
    # The encoder moved between epochs, so each mining saw new embeddings.
    assert not np.allclose(calls[0][0], calls[1][0]) and not np.allclose(calls[1][0], calls[2][0])
    for _, neg, pos in calls:
        assert (neg[:, 0] != pos).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_on_cuda(tmp_path, pairs):
    from actlab.train.biencoder import train_biencoder

    name = train_biencoder({"backbone": "tiny", "data": str(pairs), "epochs": 1, "batch_size": 8, "device": "cuda",
                            "runs_dir": str(tmp_path), "name": "gpu", "probe_backbone": True})
    r = RunStore(tmp_path).open(name)
    assert r.status().state == "finished" and {"acc/top1", "mrr"} <= set(r.keys())


def test_resume_continues_from_the_checkpoint(tmp_path, pairs, checkpoints_dir):
    from actlab.train.biencoder import train_biencoder

    base = {"backbone": "tiny", "data": str(pairs), "batch_size": 8, "lr": 1e-3, "runs_dir": str(tmp_path)}
    train_biencoder({**base, "epochs": 1, "name": "r", "head": "without_layernorm"})
    first = torch.load(checkpoints_dir / "r" / "last.pt", weights_only=True)
    train_biencoder({**base, "epochs": 2, "resume": "r"})
    second = torch.load(checkpoints_dir / "r" / "last.pt", weights_only=True)
    assert (first["step"], second["step"]) == (5, 10) and second["epoch"] == 2
    assert second["config"]["head"] == "without_layernorm"  # rebuilt from the run's own config
    r = RunStore(tmp_path).open("r")
    top1 = r.scalars(keys=["acc/top1"])[0]
    assert top1["epoch"].tolist() == [1.0, 2.0] and r.status().state == "finished"


def test_resume_without_checkpoint_is_a_user_error(tmp_path, pairs):
    from actlab import UserError
    from actlab.train.biencoder import train_biencoder

    with pytest.raises(UserError, match="no checkpoint at .*ghost"):
        train_biencoder({"backbone": "tiny", "data": str(pairs), "runs_dir": str(tmp_path), "resume": "ghost"})


def test_grad_norms_are_logged_at_every_flush_only(tmp_path, pairs):
    # after_backward runs only on steps that end in a flush; each flush must still carry fresh norms.
    from actlab.train.biencoder import train_biencoder

    name = train_biencoder({"backbone": "tiny", "data": str(pairs), "epochs": 1, "batch_size": 8, "log_every": 2,
                            "runs_dir": str(tmp_path), "name": "gn", "checkpoint": False})
    df, _ = RunStore(tmp_path).open(name).scalars()
    grad = df[df["key"].str.startswith("grad_norm/")]
    flush_steps = sorted(df[df["key"].str.startswith("dead/")]["step"].unique())
    assert sorted(grad["step"].unique()) == flush_steps and len(flush_steps) >= 2
    assert grad["value"].notna().all() and (grad["value"] > 0).any()
    # Norms differ between flushes: each is this interval's, not a stale copy of the first.
    per_step = grad.pivot_table(index="key", columns="step", values="value")
    assert not per_step[flush_steps[0]].equals(per_step[flush_steps[-1]])
