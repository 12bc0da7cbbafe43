import pytest

from actlab.cli import main
from actlab.analysis.ablation import parse_list
from actlab.logs import load_paths
from actlab.store.runs import RunStore
from tests.test_train_biencoder import write_pairs


def test_biencoder_grid_two_variants_two_seeds(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    runs = tmp_path / "runs"
    rc = main(["ablate", "biencoder", "--variants", "with_relu,without_relu", "--seeds", "2", "--backbone", "tiny",
               "--data", str(pairs), "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--runs-dir", str(runs),
               "--grid", "g", "--no-checkpoint"])
    out = capsys.readouterr().out
    assert rc == 0
    store = RunStore(runs)
    expected = {f"g-{v}-seed{s}" for v in ("with_relu", "without_relu") for s in (1, 2)}
    assert set(store.names()) == expected
    for name in expected:
        r = store.open(name)
        assert r.status().state == "finished"
        assert r.config["seed"] in (1, 2) and r.config["head"] == r.config["variant"]
    # One key=value line per epoch, named <variant>_seed<N>.log, readable by core.logs.
    grid = runs / "ablations" / "g"
    logs = sorted(p.name for p in grid.glob("*.log"))
    assert logs == ["with_relu_seed1.log", "with_relu_seed2.log", "without_relu_seed1.log", "without_relu_seed2.log"]
    lines = (grid / "with_relu_seed2.log").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch=1 step=5 loss/train=")
    parsed = load_paths([str(grid)])
    assert not parsed.errors
    df = parsed.scalars()
    assert set(df["run"]) == {p[:-4] for p in logs}
    assert set(df[df["run"] == "with_relu_seed1"]["key"]) == {"loss/train", "acc/top1", "acc/top5", "acc/top10", "mrr",
                                                              "ndcg@10/test"}
    # The summary: one row per variant, n = 2, mean ± std; the same final values as the store.
    summary = [line for line in out.splitlines() if line.startswith("| with_relu |") or line.startswith("| without_relu |")]
    assert len(summary) == 2 and all(" | 2 | " in line and "±" in line for line in summary)
    finals = [store.open(f"g-with_relu-seed{s}").last()["acc/top1"] for s in (1, 2)]
    assert f"{sum(finals) / 2:.4f} ±" in summary[0]
    ndcg = [store.open(f"g-with_relu-seed{s}").last()["ndcg@10/test"] for s in (1, 2)]
    assert "ndcg@10/test" in out and f"{sum(ndcg) / 2:.4f} ±" in summary[0]
    assert (grid / "summary.md").read_text().strip() in out


@pytest.mark.parametrize("argv, problem", [
    (["ablate", "biencoder", "--variants", "with_relu,with_tanh"], "unknown variant 'with_tanh'"),
    (["ablate", "biencoder", "--variants", ","], "--variants is empty"),
    (["ablate", "biencoder", "--seeds", "0"], "argument --seeds: expected a positive integer"),
    (["ablate", "mnist", "--activations", "relu,wobble"], "unknown activation 'wobble'"),
    (["ablate", "mnist", "--activations", "softmax"], "unknown activation 'softmax'"),
    (["ablate", "mnist", "--norms", "groupnorm"], "unknown norm 'groupnorm'"),
])
def test_unknown_variant_or_activation_is_a_user_error(tmp_path, capsys, argv, problem):
    rc = main([*argv, "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ablations").exists()  # nothing ran


def test_parse_list_all_and_dedupe():
    assert parse_list("all", ["a", "b"], "variants") == ["a", "b"]
    assert parse_list("b, a,b", ["a", "b"], "variants") == ["b", "a"]


def test_mnist_grid_writes_runs_logs_and_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACTLAB_CHECKPOINTS_DIR", str(tmp_path / "ckpt"))
    runs = tmp_path / "runs"
    rc = main(["ablate", "mnist", "--activations", "relu,gelu", "--norms", "none", "--seeds", "1", "--epochs", "1",
               "--max-steps", "8", "--runs-dir", str(runs), "--grid", "m"])
    out = capsys.readouterr().out
    assert rc == 0
    store = RunStore(runs)
    assert set(store.names()) == {"m-relu-seed1", "m-gelu-seed1"}
    assert store.open("m-gelu-seed1").config["activation"] == "gelu"
    line = (runs / "ablations" / "m" / "gelu_seed1.log").read_text().splitlines()
    assert len(line) == 1 and line[0].startswith("epoch=1 step=8 ") and " acc/test=" in line[0]
    assert "| relu | 1 |" in out and "| gelu | 1 |" in out


def test_a_stopped_run_stops_the_grid(tmp_path, capsys, monkeypatch):
    import actlab.train.biencoder as tb

    real = tb.train_biencoder
    calls = []

    def train_then_stop(cfg):
        calls.append(cfg["name"])
        name = real(cfg)
        # What a SIGTERM during the run leaves behind.
        w = RunStore(cfg["runs_dir"]).create(name, {}, resume=True)
        w.set_status("stopped", "signal")
        w.close()
        return name

    monkeypatch.setattr(tb, "train_biencoder", train_then_stop)
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    rc = main(["ablate", "biencoder", "--variants", "with_relu,without_relu", "--seeds", "1", "--backbone", "tiny",
               "--data", str(pairs), "--epochs", "1", "--batch-size", "8", "--runs-dir", str(tmp_path / "runs"),
               "--grid", "s", "--no-checkpoint"])
    assert rc == 0 and calls == ["s-with_relu-seed1"]
    assert "not starting the remaining 1 run(s)" in capsys.readouterr().out
