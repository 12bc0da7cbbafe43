"""Every supported log format parsed from fixtures; bad input gives a clear per-file error."""
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from actlab import UserError
from actlab import logs
from actlab.logs import loader
from actlab.logs import LogParseError, infer_variant_seed, load_bytes, load_paths, load_uploads, parse_bytes, parse_text
from actlab.store.runs import SCALAR_COLUMNS, RunStore

FIX = Path(__file__).parent / "fixtures" / "logs"


def parse_fixture(name, regex=None):
    return parse_bytes(name, (FIX / name).read_bytes(), regex)


def series(log, key, run=None):
    d = log.df[log.df["key"] == key]
    if run is not None:
        d = d[d["run"] == run]
    return d["step"].tolist(), d["value"].round(6).tolist()


def test_ablation_keyvalue_log():
    log = parse_fixture("with_relu_seed1.log")
    assert list(log.df.columns) == SCALAR_COLUMNS
    assert log.format == "keyvalue"
    assert set(log.df["key"]) == {"loss/train", "acc/top1", "acc/top5", "acc/top10", "mrr"}
    assert series(log, "acc/top1") == ([40, 80, 120], [0.3, 0.5, 0.4])
    assert log.df.loc[log.df["key"] == "mrr", "epoch"].tolist() == [1.0, 2.0, 3.0]
    assert log.n_unparsed == 0


def test_generic_keyvalue_uses_epoch_as_step():
    log = parse_fixture("generic_kv.log")
    assert series(log, "acc") == ([1, 2, 3], [0.81, 0.88, 0.91])


def test_pipe_separated_text_reports_chatter_lines():
    log = parse_fixture("pipes.log")
    assert series(log, "loss") == ([1, 2, 3], [0.91, 0.61, 0.41])
    assert series(log, "top1_acc") == ([1, 2, 3], [0.312, 0.412, 0.512])
    assert series(log, "top5") == ([1, 2, 3], [0.6, 0.7, 0.8])
    assert log.unparsed == [(1, "Starting training on cpu"), (5, "done.")]
    assert log.n_unparsed == 2


def test_timestamped_info_lines():
    log = parse_fixture("timestamped.log")
    assert series(log, "val/acc") == ([400, 800, 1200], [0.8, 0.85, 0.88])
    assert set(log.df["key"]) == {"val/acc"}  # the clock is not a metric


def test_percent_values_are_fractions_and_flagged():
    log = parse_fixture("percent.log")
    assert series(log, "val_acc") == ([1, 2], [0.915, 0.982])
    assert log.percent_keys == ["val_acc"]


def test_mnist_seed_log_count_over_total_and_test_prefix():
    log = parse_fixture("mnist_seed.log")
    assert series(log, "test/acc") == ([1, 2], [0.9701, 0.9812])
    assert series(log, "test/loss") == ([1, 2], [0.0021, 0.0012])
    assert series(log, "loss") == ([1, 1, 2, 2], [2.301, 0.12, 0.09, 0.05])
    assert log.n_unparsed == 0


def test_jsonl_flattens_nested_and_reports_bad_line():
    log = parse_fixture("metrics.jsonl")
    assert log.format == "jsonl"
    assert series(log, "val/acc") == ([20, 30], [0.6, 0.7])
    assert series(log, "loss") == ([10, 20, 30], [1.5, 1.1, 0.7])
    assert log.df["wall_time"].iloc[0] == 1700000000.0
    assert log.unparsed == [(3, "not json at all")]


def test_lightning_csv_sparse_rows():
    log = parse_fixture("lightning_metrics.csv")
    assert log.format == "csv:lightning"
    assert series(log, "val_acc") == ([49, 99], [0.7, 0.82])
    assert series(log, "train_loss") == ([49, 99], [0.95, 0.6])


def test_keras_csvlogger():
    log = parse_fixture("keras_history.csv")
    assert log.format == "csv:keras"
    assert series(log, "val_accuracy") == ([0, 1, 2], [0.75, 0.83, 0.86])


def test_wandb_history_and_chart_exports():
    hist = parse_fixture("wandb_history.csv")
    assert hist.format == "csv:wandb-history"
    assert series(hist, "val/acc") == ([100, 200], [0.7, 0.78])
    assert "_runtime" not in set(hist.df["key"])
    assert hist.df["wall_time"].iloc[0] == pytest.approx(1700000000.5)
    chart = parse_fixture("wandb_chart.csv")
    assert chart.runs == ["relu_seed1", "gelu_seed1"]
    assert series(chart, "val/acc", "gelu_seed1") == ([100, 200], [0.72, 0.81])
    assert len(chart.df) == 4  # __MIN/__MAX columns are not runs


def test_mlflow_history_and_runs_table():
    hist = parse_fixture("mlflow_history.csv")
    assert series(hist, "val_acc") == ([1, 2], [0.61, 0.74])
    assert hist.df["wall_time"].iloc[1] == 1700000060.0  # ms -> s
    runs = parse_fixture("mlflow_runs.csv")
    assert runs.runs == ["relu_seed1", "gelu_seed1"]
    assert series(runs, "val_acc", "gelu_seed1") == ([0], [0.84])


def test_hf_trainer_state():
    log = parse_fixture("trainer_state.json")
    assert log.format == "trainer_state"
    assert series(log, "eval_accuracy") == ([100, 200], [0.78, 0.83])
    assert log.df.loc[log.df["key"] == "loss", "epoch"].tolist() == [0.5, 1.5]


def test_tensorboard_keeps_every_point_not_a_reservoir_sample():
    path = next((FIX / "tb_relu").glob("events.out.tfevents.*"))
    log = parse_bytes(f"tb_relu/{path.name}", path.read_bytes())
    assert log.format == "tensorboard"
    assert log.runs == ["tb_relu"]
    steps, vals = series(log, "loss/train")
    assert steps == list(range(1500))
    assert vals[3] == pytest.approx(0.25)


def test_truncated_tensorboard_keeps_complete_records_and_says_so():
    data = next((FIX / "tb_relu").glob("events.out.tfevents.*")).read_bytes()
    log = parse_bytes("cut.tfevents", data[:-7])
    assert len(log.df) == 1499
    assert "truncated TensorBoard file" in log.warnings[0] and "cut.tfevents" in log.warnings[0]
    with pytest.raises(LogParseError, match=r"head.tfevents: truncated TensorBoard file"):
        parse_bytes("head.tfevents", data[:10])


def test_user_regex_named_groups():
    text = "it 5 -> score=0.5\nit 10 -> score=0.75\nnoise\n"
    log = parse_text(text, "r.log", regex=r"it (?P<step>\d+) -> score=(?P<score>[\d.]+%?)")
    assert series(log, "score") == ([5, 10], [0.5, 0.75])
    assert log.unparsed == [(3, "noise")]
    kv = parse_text("a 1 q=3\n", "k.log", regex=r"a (?P<step>\d+) (?P<key>\w+)=(?P<value>\S+)")
    assert series(kv, "q") == ([1], [3.0])
    with pytest.raises(UserError, match="invalid regex"):
        parse_text("1", "x", regex="(?P<a")
    with pytest.raises(UserError, match="named group for the value"):
        parse_text("1", "x", regex=r"(?P<step>\d+)")


def test_fast_template_path_equals_line_by_line():
    lines = []
    for i in range(300):
        lines.append(f"epoch={i} step={i * 40} loss/train={1 / (i + 1):.4f} acc/top1={i / 300:.4f}")
        if i % 7 == 0:
            lines.append(f"[10:00:{i % 60:02d}] INFO step {i * 40}: val/acc = {i / 400:.3f}")
        if i % 5 == 0:  # count over total: goes through the capture-group path
            lines.append(f"Test set: Average loss: {i / 1e4:.4f}, Accuracy: {9000 + i}/10000 ({(9000 + i) / 100:.2f}%)")
        if i % 3 == 0:  # percent: goes through the token-deleting path
            lines.append(f"epoch {i} | val_acc {50 + i / 10:.1f}%")
        if i % 50 == 0:
            lines.append("checkpoint saved")
    text = "\n".join(lines)
    fast, slow = parse_text(text, "f.log"), parse_text(text, "f.log", fast=False)
    pd.testing.assert_frame_equal(fast.df.reset_index(drop=True), slow.df.reset_index(drop=True))
    assert fast.unparsed == slow.unparsed and len(fast.unparsed) == 6
    assert fast.percent_keys == ["val_acc"]
    acc = fast.df[fast.df["key"] == "test/acc"]["value"]
    assert acc.iloc[1] == pytest.approx(0.9005) and len(acc) == 60


@pytest.mark.parametrize("path,expected", [
    ("with_relu_seed2.log", ("with_relu", 2)),
    ("without_layernorm/run-3/", ("without_layernorm", 3)),
    ("without_layernorm/run-3/metrics.csv", ("without_layernorm", 3)),
    ("grid/gelu/seed_4/events.out.tfevents.1.host", ("gelu", 4)),
    ("baseline.log", ("baseline", None)),
    ("relu-s1.jsonl", ("relu", 1)),
])
def test_infer_variant_and_seed(path, expected):
    assert infer_variant_seed(path) == expected


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


def test_zip_of_log_folder_infers_variants():
    kv = (FIX / "generic_kv.log").read_bytes()
    data = _zip({"grid/with_relu/run-1/train.log": kv, "grid/with_relu/run-2/train.log": kv,
                 "grid/without_relu_seed1.log": kv, "__MACOSX/._x": b"junk"})
    res = load_bytes("grid.zip", data)
    assert res.errors == []
    table = res.run_table().sort_values("run")
    assert table[["variant", "seed"]].values.tolist() == [["with_relu", 1], ["with_relu", 2], ["without_relu", 1]]


def test_zip_path_traversal_member_is_refused_others_load():
    kv = (FIX / "generic_kv.log").read_bytes()
    res = load_bytes("evil.zip", _zip({"../../etc/evil.log": kv, "/abs.log": kv, "ok_seed1.log": kv}))
    assert [l.name for l in res.logs] == ["ok_seed1.log"]
    msgs = dict(res.errors)
    assert "path traversal" in msgs["evil.zip/../../etc/evil.log"]
    assert "absolute path" in msgs["evil.zip//abs.log"]


def test_zip_bomb_is_refused_before_extracting():
    bomb = _zip({"zeros.log": b"0" * (60 * 2**20)})  # 60 MB of zeros deflates ~1000:1
    res = load_bytes("bomb.zip", bomb)
    assert res.logs == []
    (name, msg), = res.errors
    assert name == "bomb.zip" and "zip bomb" in msg and "ratio" in msg


def test_zip_total_size_limit(monkeypatch):
    monkeypatch.setattr(loader, "MAX_ZIP_TOTAL_BYTES", 1000)
    res = load_bytes("big.zip", _zip({"a.log": b"epoch=1 acc=0.5\n" * 100}))
    assert res.logs == [] and "expands to" in res.errors[0][1]


@pytest.mark.parametrize("name,data,problem", [
    ("empty.log", b"", "empty file"),
    ("blank.log", b"\n  \n", "empty file"),
    ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary file"),
    ("latin1.log", "epoch=1 précision=0.5\n".encode("latin-1"), "not UTF-8 text"),
    ("words.log", b"hello there\nno numbers here\n", "contains no numbers"),
    ("nopairs.log", b"12 34 56\n78\n", "no 'key value' pairs"),
    ("bad.json", b'{"log_history": 3', "not valid JSON"),
    ("run.log.gz", b"\x1f\x8b\x08\x00rest", "gzip"),
])
def test_bad_input_names_file_and_problem(name, data, problem):
    with pytest.raises(LogParseError) as e:
        parse_bytes(name, data)
    assert str(e.value).startswith(f"{name}: ") and problem in str(e.value)


def test_bad_files_do_not_stop_good_ones():
    good = (FIX / "generic_kv.log").read_bytes()
    res = load_uploads([("empty.log", b""), ("a_seed1.log", good), ("bin.dat", b"\x00\x01\x02" * 50),
                        ("b_seed1.log", good)])
    assert [l.name for l in res.logs] == ["a_seed1.log", "b_seed1.log"]
    assert [f for f, _ in res.errors] == ["empty.log", "bin.dat"]


def test_file_over_upload_limit(monkeypatch):
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 100)
    res = load_uploads([("huge.log", b"epoch=1 acc=0.5\n" * 20), ("small.log", b"epoch=1 acc=0.5\n")])
    assert [l.name for l in res.logs] == ["small.log"]
    assert res.errors[0][0] == "huge.log" and "over the" in res.errors[0][1] and "limit" in res.errors[0][1]


def test_cache_serves_unchanged_content():
    data = b"epoch=1 acc=0.25\nepoch=2 acc=0.5\n"
    first = parse_bytes("cache_me.log", data)
    before = dict(loader.cache_stats)
    again = parse_bytes("cache_me.log", data)
    assert again is first and loader.cache_stats["hits"] == before["hits"] + 1
    changed = parse_bytes("cache_me.log", data + b"epoch=3 acc=0.75\n")
    assert changed is not first and series(changed, "acc")[1] == [0.25, 0.5, 0.75]


def test_run_store_runs_are_read(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("relu_seed3", {"variant": "relu", "seed": 3})
    w.log_scalars(1, {"acc/test": 0.5}, epoch=1)
    w.log_scalars(2, {"acc/test": 0.75}, epoch=2)
    w.close()
    res = load_paths([str(tmp_path)])
    assert res.errors == []
    assert series(res.logs[0], "acc/test") == ([1, 2], [0.5, 0.75])
    t = logs.variant_seed_of(res)
    assert t[["run", "variant", "seed"]].values.tolist() == [["relu_seed3", "relu", 3]]


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        load_paths([str(tmp_path / "nope")])


def test_same_file_name_twice_gets_distinct_runs():
    res = load_uploads([("x.log", b"epoch=1 acc=0.5\n"), ("x.log", b"epoch=1 acc=0.7\n")])
    df = res.scalars()
    assert df[["run", "value"]].values.tolist() == [["x", 0.5], ["x#2", 0.7]]
    assert res.run_table()["run"].tolist() == ["x", "x#2"]
