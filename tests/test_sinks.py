"""Sinks, read back with each tracker's own reader: TensorBoard's EventAccumulator, MlflowClient,
and the W&B offline run folder through our W&B reader (core/logs/trackers.py)."""
import time
from pathlib import Path

import numpy as np
import pytest

from actlab import UserError
from actlab.sinks import (MlflowSink, Sink, SinkItem, TensorBoardSink, WandbSink, from_report_to, mlflow_key,
                          parse_sinks)


def items(n=5):
    out = []
    for i in range(n):
        step = 10 * (i + 1)
        ev = ({"step": step, "kind": "recycle", "layer": "fc1", "units": [1, 2, 3], "reason": "dormant"},) if i == 2 else ()
        out.append(SinkItem(step, 1_700_000_000.0 + i, {"dead/fc1": i / 10, "dormant/fc1": 0.5 - i / 20,
                                                         "grad_norm/fc1.weight": 1.0 + i, "ndcg@10/test": 0.25},
                            {"pre/fc1": (np.linspace(-2, 2, 5), np.array([1.0, 2, 3, 4 + i]))}, ev))
    return out


def run_sink(sink, its):
    sink.start("run-a")
    for it in its:
        sink.submit(it)
    sink.close("finished")
    return sink


def test_tensorboard_sink_read_by_event_accumulator(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = run_sink(TensorBoardSink(tmp_path / "tb"), items())
    assert sink.written == 5 and sink.failures == 0
    acc = EventAccumulator(str(tmp_path / "tb" / "run-a"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    dead = acc.Scalars("dead/fc1")
    assert [e.step for e in dead] == [10, 20, 30, 40, 50]
    assert [round(e.value, 6) for e in dead] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert [round(e.value, 6) for e in acc.Scalars("grad_norm/fc1.weight")] == [1.0, 2.0, 3.0, 4.0, 5.0]
    h = acc.Histograms("pre/fc1")
    assert [e.step for e in h] == [10, 20, 30, 40, 50]
    assert list(h[-1].histogram_value.bucket) == [1.0, 2.0, 3.0, 8.0]
    assert list(h[-1].histogram_value.bucket_limit) == [-1.0, 0.0, 1.0, 2.0]
    texts = acc.Tensors("actlab/events/text_summary")
    assert [t.step for t in texts] == [30]
    assert b"recycle fc1 (3 units): dormant" in texts[0].tensor_proto.string_val[0]


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    pytest.importorskip("mlflow")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_mlflow_sink_read_by_mlflow_client(mlflow_uri):
    from mlflow.tracking import MlflowClient

    sink = run_sink(MlflowSink(mlflow_uri, experiment="sinks"), items())
    assert sink.written == 5 and sink.failures == 0, sink.last_error
    c = MlflowClient(tracking_uri=mlflow_uri)
    run = c.get_run(sink.run_id)
    assert run.info.run_name == "run-a" and run.info.status == "FINISHED"
    hist = c.get_metric_history(sink.run_id, "dead/fc1")
    assert [(m.step, round(m.value, 6)) for m in hist] == [(10, 0.0), (20, 0.1), (30, 0.2), (40, 0.3), (50, 0.4)]
    assert [m.timestamp for m in hist][0] == 1_700_000_000_000
    # '@' is not allowed in an MLflow key: it is written under the sanitised name.
    assert mlflow_key("ndcg@10/test") == "ndcg_10/test"
    assert [m.value for m in c.get_metric_history(sink.run_id, "ndcg_10/test")] == [0.25] * 5
    assert run.data.tags["actlab.event.0"] == "step 30: recycle fc1 (3 units): dormant"


def test_wandb_sink_offline_read_by_our_reader(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from actlab.logs.trackers import find_runs, load_runs

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = run_sink(WandbSink("sinks", dir=tmp_path), items())
    assert sink.written == 5 and sink.failures == 0, sink.last_error
    # wandb-core (its own process) writes the log; finish() can return before its last records are on disk.
    deadline = time.time() + 60
    while True:
        paths = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
        runs = find_runs(paths)
        res = load_runs(runs, {p: (tmp_path / p).read_bytes() for p in paths})
        if (res.logs and res.logs[0].df["step"].max() == 50) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(runs) == 1
    assert not res.errors
    df = res.logs[0].df
    dead = df[df["key"] == "dead/fc1"].sort_values("step")
    assert dead["step"].tolist() == [10, 20, 30, 40, 50]
    assert np.allclose(dead["value"], [0.0, 0.1, 0.2, 0.3, 0.4])
    assert "pre/fc1" not in set(df["key"])  # a histogram is not a scalar


class Flaky(Sink):
    name, package = "flaky", "numpy"

    def __init__(self, fail_times):
        super().__init__()
        self.fail_times, self.got = fail_times, []

    def _open(self, run):
        pass

    def _write(self, item):
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("server down")
        self.got.append(item.step)


def test_failing_sink_warns_once_retries_and_keeps_order(capsys):
    sink = Flaky(fail_times=3)
    run_sink(sink, items(5))
    err = capsys.readouterr().err
    assert err.count("the flaky sink failed") == 1 and "server down" in err and "retrying" in err
    # Every item arrived once, in order: the ones that failed were retried at the next flushes.
    assert sink.got == [10, 20, 30, 40, 50] and sink.failures == 3


def test_sink_that_never_recovers_does_not_raise(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sink = run_sink(TensorBoardSink(blocker), items(3))  # SummaryWriter cannot make a folder under a file
    assert sink.written == 0 and sink.failures == 4  # one try per flush, one more at close
    err = capsys.readouterr().err
    assert err.count("the tensorboard sink failed") == 1
    assert "the tensorboard sink could not write 3 flush(es) of run-a" in err


def test_missing_tracker_one_line(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    sink = MlflowSink("sqlite:///nowhere.db")
    sink.start("r")
    sink.submit(items(1)[0])
    sink.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["actlab: pip install mlflow to use the mlflow sink (training goes on without it)"]
    assert not sink.enabled and sink.written == 0


def test_flush_does_not_wait_for_a_blocking_tracker():
    class Slow(Flaky):
        def _write(self, item):
            time.sleep(0.3)
            self.got.append(item.step)

    sink = Slow(0)
    sink.start("r")
    t = time.perf_counter()
    for it in items(5):
        sink.submit(it)
    assert time.perf_counter() - t < 0.1  # 5 writes of 0.3 s each happen on the sink's thread
    sink.close()
    assert sink.got == [10, 20, 30, 40, 50]


def test_parse_sinks_specs(tmp_path):
    tb, ml, wb = parse_sinks([f"tensorboard:{tmp_path}", "mlflow:sqlite:///x.db", "wandb:proj"])
    assert isinstance(tb, TensorBoardSink) and tb.log_dir == Path(tmp_path)
    assert isinstance(ml, MlflowSink) and ml.tracking_uri == "sqlite:///x.db"
    assert isinstance(wb, WandbSink) and wb.project == "proj"
    assert parse_sinks(None) == [] and len(parse_sinks("mlflow")) == 1
    assert parse_sinks([tb]) == [tb]


@pytest.mark.parametrize("spec, msg", [
    ("comet", "unknown sink 'comet'"), ("tensorboard:", "names no folder"), ("mlflow:  ", "names no value"),
    (3, "expected a string"), ("", "unknown sink ''")])
def test_parse_sinks_bad_specs(spec, msg):
    with pytest.raises(UserError, match=msg):
        parse_sinks([spec])


def test_parse_sinks_not_a_list():
    with pytest.raises(UserError, match="expected a list"):
        parse_sinks(5)


def test_from_report_to():
    assert from_report_to(["tensorboard", "wandb", "comet_ml"], "out/runs") == ["tensorboard:out/runs", "wandb"]
    assert from_report_to("none") == [] and from_report_to(None) == []
    assert from_report_to("all") == ["tensorboard", "mlflow", "wandb"]


def test_wandb_log_reader_bad_input(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from actlab.logs.parsed import LogParseError
    from actlab.logs.wandb_log import history

    with pytest.raises(LogParseError, match="not a W&B transaction log"):
        history(b"{}\n", "x.wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_sink(WandbSink("sinks", dir=tmp_path), items(3))
    deadline = time.time() + 60
    while True:  # wandb-core may still be writing the log (see above)
        data = next(tmp_path.rglob("run-*.wandb")).read_bytes()
        full, _ = history(data)
        if sum("dead/fc1" in r for r in full) == 3 or time.time() > deadline:
            break
        time.sleep(0.2)
    cut, warnings = history(data[:-5])  # a live run's log ends mid-record
    assert [r["_step"] for r in full if "dead/fc1" in r] == [10, 20, 30]
    assert len(cut) <= len(full) and all(r in full for r in cut)
    assert warnings and "unreadable from byte" in warnings[0]


def test_tracker_that_does_not_answer_is_reported_and_close_gives_up(capsys):
    import threading

    release = threading.Event()

    class Hung(Flaky):
        def _write(self, item):
            release.wait(30)  # a tracker server that does not answer

    sink = Hung(0)
    sink.slow_warn_s, sink.close_timeout_s = 0.2, 0.5
    sink.start("run-h")
    sink.submit(items(1)[0])
    deadline = time.time() + 30
    while sink._busy_since is None and time.time() < deadline:  # the write has started
        time.sleep(0.01)
    time.sleep(0.3)  # past slow_warn_s: the next flush notices
    t = time.perf_counter()
    sink.submit(items(2)[1])
    assert time.perf_counter() - t < 0.1
    sink.close()
    release.set()
    err = capsys.readouterr().err
    assert "the flaky sink failed: its tracker has not answered for" in err and "training goes on" in err
    assert "was still writing run-h 0.5 s after the run ended" in err and "(2 flushes) is lost" in err
