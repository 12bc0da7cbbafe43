"""The formats people actually have (real-shaped samples in tests/data/), header lines that are not
metrics, and the `logs summarize` acceptance run: text and tabular logs plus an MNIST run log."""
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from actlab.cli import main
from actlab.logs import LogParseError, load_bytes, load_paths, parse_bytes, variant_seed_of
from actlab.logs.keras import parse_keras_console
from actlab.logs.pairs import _line_pairs

DATA = Path(__file__).parent / "data"
FIX = Path(__file__).parent / "fixtures" / "logs"


def series(log_or_df, key, run=None):
    d = getattr(log_or_df, "df", log_or_df)
    d = d[d["key"] == key]
    if run is not None:
        d = d[d["run"] == run]
    return d["step"].tolist(), d["value"].round(6).tolist()


def zip_dir(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(root.parent).as_posix())
    return buf.getvalue()


@pytest.mark.parametrize("line", [
    "Training with relu, seed1, with LayerNorm, lr 0.001, batch size 64, 5 epochs",
    "Training with relu seed1 with 2 layers",
    "showing 5 of 121 hard negatives per query",
    "Loaded 12000 argument pairs from data/pairs.jsonl in 1.8 s",
    "Using device cuda:0 with 8 GPUs",
    "WARNING:tensorflow:5 out of the last 9 calls to <function> triggered tf.function retracing",
    "/opt/conda/lib/python3.11/site-packages/torch/optim/lr_scheduler.py:143: UserWarning: Detected call 2",
    "Epoch 3: val_acc improved from 0.85 to 0.88, saving model to best.h5",
])
def test_header_prose_and_warning_lines_give_no_keys(line):
    assert _line_pairs(line) == []


def test_metric_lines_keep_their_keys():
    assert [p[0] for p in _line_pairs("Epoch 1 | loss 0.91 | top1 acc: 0.312 | time to epoch: 3.2")] == \
        ["epoch", "loss", "top1_acc"]  # one prose word drops only its own pair
    assert [p[0] for p in _line_pairs("epoch=1 seed=3 acc=0.5")] == ["epoch", "acc"]  # a seed is no metric
    assert [p[0] for p in _line_pairs("ndcg@10: 0.41")] == ["ndcg@10"]


def test_ablation_log_with_header_lines():
    log = parse_bytes("with_relu_seed1.log", (DATA / "ablation" / "with_relu_seed1.log").read_bytes())
    assert set(log.df["key"]) == {"loss", "top1_acc", "top5_acc"}
    assert series(log, "top1_acc")[0] == [188, 376, 564, 752, 940]
    assert log.df.loc[log.df["key"] == "loss", "epoch"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # "Epoch 3/5" is 3
    assert [n for n, _ in log.unparsed] == [1, 2, 3, 7]  # header, two prose lines, the warning
    # a key that spells the run's variant comes from a line naming the run, not a metric
    named = parse_bytes("with_relu_seed1.log", b"with_relu top1 0.9\nrelu seed1 0.5\nepoch 1 top1 0.5\nepoch 2 top1 0.6\n")
    assert set(named.df["key"]) == {"top1"} and series(named, "top1") == ([1, 2], [0.5, 0.6])
    # a one-word variant is too often part of a real metric's name to drop keys for
    assert set(parse_bytes("acc.log", b"epoch 1 val_acc 0.5\nepoch 2 val_acc 0.6\n").df["key"]) == {"val_acc"}


def test_keras_fit_console_tf2_backspaces_warnings_and_evaluate():
    log = parse_bytes("mnist_fit_tf2.log", (DATA / "keras" / "mnist_fit_tf2.log").read_bytes())
    assert log.format == "keras-console"
    # one value per epoch per key, from the epoch's full line, never from a progress update
    assert series(log, "accuracy") == ([1, 2, 3], [0.9139, 0.9577, 0.9677])
    assert series(log, "val_loss") == ([1, 2, 3], [0.147, 0.1052, 0.089])
    assert series(log, "eval/accuracy") == ([3], [0.9724]) and series(log, "eval/loss") == ([3], [0.089])
    assert series(log, "test_accuracy") == ([3], [0.9724])  # the script's own print after evaluate
    # TensorFlow's and absl's warnings glued into progress lines make no keys
    assert set(log.df["key"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "eval/loss", "eval/accuracy",
                                  "test_accuracy"}
    assert log.df.groupby(["key", "step"]).size().max() == 1


def test_keras3_console_carriage_returns_and_python_warning():
    log = parse_bytes("mnist_fit_keras3.log", (DATA / "keras" / "mnist_fit_keras3.log").read_bytes())
    assert series(log, "val_accuracy") == ([1, 2], [0.9598, 0.9702])
    assert series(log, "eval/loss") == ([2], [0.0945])
    assert log.df.groupby(["key", "step"]).size().max() == 1
    assert log.unparsed == [(3, "self._warn_if_super_not_called()")]  # the warning's second line, reported


def test_keras_console_bad_input():
    with pytest.raises(LogParseError, match="no completed epoch line"):
        parse_keras_console("Epoch 1/2\n  10/100 [==>....] - ETA: 3s - loss: 0.5\n", "cut.log")
    log = parse_keras_console("Epoch 1/2\n100/100 [======] - 1s 2ms/step - loss: 0.5\nEpoch 2/2\n"
                              "  10/100 [==>....] - ETA: 3s - loss: 0.4\n", "killed.log")
    assert series(log, "loss") == ([1], [0.5]) and "epoch 2 has no completed progress line" in log.warnings[0]


def test_keras_csvlogger_files_in_run_folders():
    res = load_paths([str(DATA / "keras" / "csvlogger")])
    assert res.errors == [] and {l.format for l in res.logs} == {"csv:keras"}
    t = variant_seed_of(res).set_index("run")
    assert t.loc["relu_seed1/training", ["variant", "seed"]].tolist() == ["relu", 1]
    assert series(res.scalars(), "val_accuracy", "tanh_seed1/training") == ([0, 1, 2], [0.9151, 0.9562, 0.967])


@pytest.mark.parametrize("as_zip", [False, True])
def test_mlflow_run_folders(as_zip):
    root = DATA / "mlruns"
    res = load_bytes("mlruns.zip", zip_dir(root)) if as_zip else load_paths([str(root)])
    assert res.errors == []
    assert sorted(l.format for l in res.logs) == ["mlflow-run"] * 3
    t = variant_seed_of(res).set_index("run")
    assert t.loc[["relu-s1", "relu-s2", "tanh-s1"], "variant"].tolist() == ["relu", "relu", "tanh"]
    assert t.loc[["relu-s1", "relu-s2", "tanh-s1"], "seed"].tolist() == [1, 2, 1]  # from params/seed
    df = res.scalars()
    assert series(df, "val/accuracy", "relu-s2") == ([0, 1, 2], [0.9398, 0.9649, 0.9722])  # a key with "/"
    assert df.loc[df["run"] == "relu-s1", "wall_time"].iloc[0] == 1700000130.0  # ms -> s
    assert "train_stdout" not in set(df["run"])  # an artifact is part of its run, not a run


def test_mlflow_bad_metric_line_and_empty_run(tmp_path):
    run = tmp_path / "mlruns" / "0" / "abc"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("run_id: abc\nrun_name: gelu_seed4\n")
    (run / "metrics" / "acc").write_text("1700000000000 0.5 0\nnot a number\n1700000001000 0.6 1\n")
    empty = tmp_path / "mlruns" / "0" / "def"
    (empty / "metrics").mkdir(parents=True)
    (empty / "meta.yaml").write_text("run_id: def\n")
    (empty / "metrics" / "acc").write_text("garbage\n")
    res = load_paths([str(tmp_path / "mlruns")])
    (log,) = res.logs
    assert series(log, "acc") == ([0, 1], [0.5, 0.6]) and log.unparsed == [(2, "metrics/acc: not a number")]
    assert res.errors == [("0/def", "MLflow run folder has no readable metrics/ files")]
    assert variant_seed_of(res)[["run", "variant", "seed"]].values.tolist() == [["gelu_seed4", "gelu", 4]]


@pytest.mark.parametrize("as_zip", [False, True])
def test_wandb_offline_runs(as_zip):
    root = DATA / "wandb"
    res = load_bytes("wandb.zip", zip_dir(root)) if as_zip else load_paths([str(root)])
    assert res.errors == [] and [l.format for l in res.logs] == ["wandb-run", "wandb-run"]
    df = res.scalars()
    assert sorted(set(df["run"])) == ["3k9x2m1q", "7p4w8z0c"]  # output.log is not a run of its own
    assert set(df["key"]) == {"train/loss", "val/acc"}  # no _runtime, no image sizes from media
    assert series(df, "val/acc", "7p4w8z0c") == ([0, 1, 2], [0.935, 0.962, 0.975])
    assert df["wall_time"].iloc[0] == pytest.approx(1699956931.5)
    assert variant_seed_of(res)["seed"].tolist() == [1, 1]  # from config.yaml


def test_wandb_summary_only_and_broken_history(tmp_path):
    run = tmp_path / "wandb" / "run-20231114_101500-aaaa1111" / "files"
    run.mkdir(parents=True)
    (run / "wandb-summary.json").write_text(json.dumps({"val/acc": 0.9, "_step": 7, "_runtime": 3}))
    other = tmp_path / "wandb" / "run-20231114_111500-bbbb2222" / "files"
    other.mkdir(parents=True)
    (other / "wandb-history.jsonl").write_text('{"_step": 0, "val/acc": 0.8}\n{"_step": 1, "val/acc": \n')
    res = load_paths([str(tmp_path / "wandb")])
    logs = {l.runs[0]: l for l in res.logs}
    assert logs["aaaa1111"].format == "wandb-run:summary" and series(logs["aaaa1111"], "val/acc") == ([7], [0.9])
    assert series(logs["bbbb2222"], "val/acc") == ([0], [0.8]) and logs["bbbb2222"].n_unparsed == 1


def test_wandb_runs_table_export():
    path = next((DATA / "wandb_export").glob("*.csv"))
    res = load_paths([str(path)])
    (log,) = res.logs
    assert log.format == "csv:wandb-runs" and log.runs == ["relu_seed1", "relu_seed2", "gelu_seed1", "gelu_seed2"]
    assert "seed" not in set(log.df["key"]) and "Runtime" not in set(log.df["key"])
    assert series(log, "val/acc", "gelu_seed1") == ([2], [0.975])
    assert series(log, "val/acc", "gelu_seed2") == ([], [])  # crashed before validating
    t = variant_seed_of(res)
    assert t[["variant", "seed"]].values.tolist() == [["relu", 1], ["relu", 2], ["gelu", 1], ["gelu", 2]]


def test_zip_of_an_ablation_folder_keeps_each_run():
    res = load_bytes("ablation.zip", zip_dir(DATA / "ablation"))
    assert res.errors == [] and len(res.run_table()) == 12
    t = variant_seed_of(res)
    assert sorted(t["variant"].unique()) == ["with_layernorm", "with_relu", "without_layernorm", "without_relu"]
    assert t.groupby("variant")["seed"].apply(sorted).tolist() == [[1, 2, 3]] * 4


def test_cli_summarize_ablation_plus_mnist_log_picks_shared_top1(tmp_path, capsys):
    """Done when: text and tabular logs plus one MNIST run log, no --metric."""
    shutil.copytree(DATA / "ablation", tmp_path / "ablation")
    assert main(["logs", "summarize", str(tmp_path / "ablation"), str(FIX / "mnist_seed.log"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "top1_acc"
    assert out["metric_reason"].startswith("top1_acc: logged by 12 of 13 runs in 4 variants")
    keys = {k for r in out["runs"] for k in r["metrics"]}
    assert keys == {"loss", "top1_acc", "top5_acc", "train_loss", "test/acc", "test/loss"}  # none from a header
    assert len(out["comparisons"]) == 6
    for c in out["comparisons"]:
        assert set(c) == {"a", "b", "n_a", "n_b", "diff", "diff_ci95", "p_value", "p_adjusted", "verdict", "test",
                          "prob_improvement", "mde", "seeds_needed"}
        assert all(c[k] is not None for k in c)
        assert c["p_adjusted"] >= c["p_value"] and c["diff_ci95"][0] <= c["diff"] <= c["diff_ci95"][1]
    best = min(out["comparisons"], key=lambda c: c["p_adjusted"])
    assert (best["a"], best["b"], best["verdict"]) == ("with_relu", "without_relu", "with_relu")
    assert out["summary"].startswith("On the final top1_acc of 12 runs in 4 variants (higher is better): "
                                     "with_relu beats without_relu by 2.1 points")
    assert [u["count"] for u in out["unparsed"]] == [4] * 6  # the header, prose and warning lines, reported
