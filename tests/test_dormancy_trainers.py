"""Our trainers with every dormancy definition on: the stress preset and a small BERT."""

from actlab.cli import main
from actlab.store.runs import RunStore
from actlab.train import launcher
from actlab.watcher.dormancy import DEFINITIONS
from tests.test_train_biencoder import checkpoints_dir  # noqa: F401  (the fixture)


def _keys(runs_dir, name):
    with RunStore(runs_dir).open(name) as r:
        return set(r.keys()), [u["key"] for u in r.unit_activity() if u["key"].startswith("overlap/")]


def test_mnist_stress_with_dormancy_and_recycle_by_age(runs_dir, capsys):
    rc = main(["train", "mnist", "--preset", "stress", "--dormancy", "--max-steps", "40", "--log-every", "10",
               "--recycle-every", "20", "--recycle-by", "age", "--runs-dir", str(runs_dir), "--name", "stress",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    keys, overlaps = _keys(runs_dir, "stress")
    for d in ("dead", "redo", "grama", "utility", "age", "overactive"):
        assert f"dormancy/{d}/act1" in keys
    assert "rank/act1" in keys and "feature_norm/act1" in keys and "overlap/act1" in overlaps
    with RunStore(runs_dir).open("stress") as r:
        rec = [e for e in r.events() if e["kind"] == "recycle"]
    assert rec and rec[0]["details"]["by"] == "age"


def test_mnist_bad_recycle_by(runs_dir, capsys):
    assert main(["train", "mnist", "--recycle-by", "rarely", "--runs-dir", str(runs_dir)]) == 2
    assert "argument --recycle-by: invalid choice" in capsys.readouterr().err


def test_launcher_passes_dormancy():
    assert "--dormancy" in launcher.build_argv("mnist", {"dormancy": True})
    assert "--dormancy" not in launcher.build_argv("mnist", {"dormancy": False})
    assert "--dormancy" in launcher.build_argv("biencoder", {"dormancy": True})


def test_small_bert_backbone_with_dormancy(tmp_path):
    from tests.test_train_biencoder import write_pairs
    from actlab.train.biencoder import train_biencoder

    pairs = write_pairs(tmp_path / "pairs.jsonl")
    name = train_biencoder({"backbone": "tiny", "data": str(pairs), "epochs": 1, "batch_size": 8, "max_steps": 8,
                            "runs_dir": str(tmp_path), "name": "bert", "checkpoint": False, "probe_backbone": True,
                            "dormancy": True, "log_every": 4, "progress": False})
    keys, overlaps = _keys(tmp_path, name)
    ffn = [k.split("/", 2)[2] for k in keys if k.startswith("dormancy/redo/") and "backbone" in k]
    assert len(ffn) == 2  # the tiny BERT's two FFN activations (GELU)
    for layer in ffn:
        assert {f"dormancy/{d}/{layer}" for d in ("redo", "grama", "age", "overactive", "saturated")} <= keys
        assert f"rank/{layer}" in keys and f"overlap/{layer}" in overlaps
    assert len(DEFINITIONS) == 7
