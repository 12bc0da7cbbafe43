"""Live sources: TensorBoard folders followed byte by byte, MLflow runs through MlflowClient."""
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from actlab import UserError
from actlab.logs.tfrecord import masked_crc32c
from actlab.sources import tensorboard as tb
from actlab.sources.tensorboard import EventFileTail, TensorBoardFollower, find_runs


def record(step: int, tag: str = "loss", value: float = 0.5, wall: float = 1.7e9) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    b = event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])).SerializeToString()
    h = struct.pack("<Q", len(b))
    return h + struct.pack("<I", masked_crc32c(h)) + b + struct.pack("<I", masked_crc32c(b))


def steps(f, key="loss"):
    d = f.scalars[f.scalars["key"] == key]
    return sorted(d["step"].tolist())


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "logs" / "exp"
    d.mkdir(parents=True)
    return d


def test_follows_summary_writer_reading_only_appended_bytes(run_dir):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run_dir))
    for s in range(10):
        w.add_scalar("loss", 1 / (s + 1), s)
    w.flush()
    runs = find_runs(run_dir.parent)
    assert runs == {"tb:logs/exp": run_dir}
    f = TensorBoardFollower("tb:logs/exp", run_dir)
    assert f.poll() == 10 and steps(f) == list(range(10))
    tail = next(iter(f.tails.values()))
    assert tail.offset == tail.path.stat().st_size
    assert f.poll() == 0  # nothing new: nothing read
    for s in range(10, 15):
        w.add_scalar("loss", 1 / (s + 1), s)
    w.flush()
    before = tail.offset
    assert f.poll() == 5 and steps(f) == list(range(15))
    assert tail.offset > before
    assert np.isclose(f.scalars.set_index("step").loc[14, "value"], 1 / 15)
    assert f.status.state == "running"
    w.close()


def test_record_cut_at_the_end_waits_for_the_next_refresh(run_dir):
    ev = run_dir / "events.out.tfevents.1.host"
    whole = record(0) + record(1) + record(2)
    cut = len(record(0)) + len(record(1)) + 7  # inside the third record's header
    for verify in (True, False):
        ev.write_bytes(whole[:cut])
        f = TensorBoardFollower("r", run_dir, verify_crc=verify)
        assert f.poll() == 2 and not f.warnings
        ev.write_bytes(whole[:-3])  # now inside its payload CRC
        assert f.poll() == 0 and not f.warnings
        ev.write_bytes(whole)
        assert f.poll() == 1 and steps(f) == [0, 1, 2] and not f.warnings


def test_corrupt_payload_mid_file_skipped_naming_its_offset(run_dir):
    ev = run_dir / "events.out.tfevents.1.host"
    recs = [record(s) for s in range(5)]
    bad = bytearray(recs[2])
    bad[-6] ^= 0xFF  # a byte of the payload: its CRC fails
    ev.write_bytes(b"".join(recs[:2]) + bytes(bad) + b"".join(recs[3:]))
    f = TensorBoardFollower("r", run_dir, verify_crc=True)
    assert f.poll() == 4 and steps(f) == [0, 1, 3, 4]
    at = len(recs[0]) + len(recs[1])
    assert f.warnings == [f"{ev.name}: the record at byte {at} fails its CRC: skipped"]


def test_corrupt_header_mid_file_skips_to_the_next_record(run_dir):
    # With the CRCs checked (the default): skipped, a bad length cannot be told from a good one.
    ev = run_dir / "events.out.tfevents.1.host"
    recs = [record(s) for s in range(5)]
    bad = bytearray(recs[2])
    bad[0] ^= 0x55  # the length: nothing after it can be framed by following lengths
    ev.write_bytes(b"".join(recs[:2]) + bytes(bad) + b"".join(recs[3:]))
    f = TensorBoardFollower("r", run_dir, verify_crc=True)
    f.poll()
    at = len(recs[0]) + len(recs[1])
    assert steps(f) == [0, 1, 3, 4]
    assert f.warnings == [f"{ev.name}: the record header at byte {at} fails its CRC: skipped to the next "
                          f"record at byte {at + len(recs[2])}"]
    with open(ev, "ab") as fh:  # reading goes on from there
        fh.write(record(5))
    assert f.poll() == 1 and steps(f)[-1] == 5 and len(f.warnings) == 1


def test_restarted_writer_new_file_joins_and_deleted_file_ends_with_a_note(run_dir):
    first = run_dir / "events.out.tfevents.1.host"
    first.write_bytes(b"".join(record(s) for s in range(3)))
    f = TensorBoardFollower("r", run_dir)
    assert f.poll() == 3
    (run_dir / "events.out.tfevents.2.host").write_bytes(b"".join(record(s) for s in range(3, 6)))
    assert f.poll() == 3 and steps(f) == list(range(6))
    first.unlink()
    assert f.poll() == 0
    assert steps(f) == list(range(6))  # what was read stays on the chart
    assert f.notes == [f"event file {first.name} was deleted while followed: its series end at step 2"]
    assert "deleted" in f.status.reason


def test_thinning_keeps_extremes_and_first_and_last(run_dir):
    ev = run_dir / "events.out.tfevents.1.host"
    values = np.full(5000, 0.5, np.float32)
    values[1234] = 9.0
    ev.write_bytes(b"".join(record(s, value=float(v)) for s, v in enumerate(values)))
    f = TensorBoardFollower("r", run_dir, points=50)
    assert f.poll() == 5000
    d = f.scalars
    assert len(d) <= 2 * 50 + 2 and f.series.rows_seen == 5000
    assert {0, 1234, 4999} <= set(d["step"]) and d["value"].max() == 9.0


def test_folder_bad_input(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        find_runs(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        find_runs(tmp_path / "file")
    monkeypatch.setenv(tb.MAX_EVENT_FILES_ENV, "many")
    with pytest.raises(UserError, match="must be a whole number"):
        find_runs(tmp_path)


def test_ten_thousand_event_files_refused_past_the_limit(tmp_path):
    d = tmp_path / "huge" / "run"
    d.mkdir(parents=True)
    for i in range(10_000):
        (d / f"events.out.tfevents.{i}.host").touch()
    with pytest.raises(UserError) as e:
        find_runs(tmp_path / "huge")
    assert f"more than {tb.MAX_EVENT_FILES} event files" in str(e.value) and tb.MAX_EVENT_FILES_ENV in str(e.value)
    with pytest.raises(UserError, match=f"more than the limit of {tb.MAX_EVENT_FILES}"):
        TensorBoardFollower("r", d).poll()


def test_tail_of_a_file_that_shrank_reads_again(run_dir):
    ev = run_dir / "events.out.tfevents.1.host"
    ev.write_bytes(record(0) + record(1))
    t = EventFileTail(ev)
    assert len(t.read()) == 2
    ev.write_bytes(record(7))
    assert t.read()["step"].tolist() == [7] and "shrank" in t.warnings[0]


# ---------------------------------------------------------------- MLflow
LOG_RUN = """
import sys
from mlflow.tracking import MlflowClient
c = MlflowClient(tracking_uri=sys.argv[1])
e = c.get_experiment_by_name("ext") or None
eid = e.experiment_id if e else c.create_experiment("ext")
r = c.create_run(eid, run_name=sys.argv[2])
for s in range(int(sys.argv[3])):
    c.log_metric(r.info.run_id, "train/loss", 1.0 / (s + 1), step=s)
print(r.info.run_id)
"""


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    pytest.importorskip("mlflow")
    return f"sqlite:///{tmp_path_factory.mktemp('mlsrc') / 'mlflow.db'}"


def log_in_other_process(uri, name, n):
    out = subprocess.run([sys.executable, "-c", LOG_RUN, uri, name, str(n)], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_mlflow_run_from_another_process_followed_then_deleted(mlflow_uri):
    from mlflow.tracking import MlflowClient

    from actlab.sources.mlflow import MlflowFollower, find_runs as mlflow_runs

    run_id = log_in_other_process(mlflow_uri, "their-run", 5)
    runs = mlflow_runs(mlflow_uri)
    assert runs["mlflow:ext/their-run"] == run_id
    f = MlflowFollower("mlflow:ext/their-run", mlflow_uri, run_id)
    assert f.poll() == 5 and steps(f, "train/loss") == [0, 1, 2, 3, 4]
    assert f.status.state == "running"
    c = MlflowClient(tracking_uri=mlflow_uri)
    asked = []
    real = f._client.get_metric_history
    f._client.get_metric_history = lambda rid, key: asked.append(key) or real(rid, key)
    assert f.poll() == 0 and asked == []  # nothing new: no history query
    c.log_metric(run_id, "train/loss", 0.01, step=5)
    assert f.poll() == 1 and steps(f, "train/loss")[-1] == 5 and asked == ["train/loss"]
    c.delete_run(run_id)
    assert f.poll() == 0 and f.status.state == "ended"
    assert f.notes == ["the MLflow run was deleted while followed: its series end here"]
    assert steps(f, "train/loss") == [0, 1, 2, 3, 4, 5]
    assert "mlflow:ext/their-run" not in mlflow_runs(mlflow_uri)


@pytest.mark.parametrize("uri, msg", [("", "tracking URI is empty"), ("   ", "tracking URI is empty"),
                                      ("nosuchscheme://x", "MLflow tracking URI 'nosuchscheme://x'")])
def test_mlflow_bad_uri_one_line(uri, msg):
    pytest.importorskip("mlflow")
    from actlab.sources.mlflow import find_runs as mlflow_runs

    with pytest.raises(UserError, match=msg) as e:
        mlflow_runs(uri)
    assert "\n" not in str(e.value)


def test_load_runs_for_compare_keeps_every_point_and_names_failures(tmp_path):
    from actlab.sources import discover, load_runs

    d = tmp_path / "tb" / "a"
    d.mkdir(parents=True)
    (d / "events.out.tfevents.1.h").write_bytes(b"".join(record(s, value=s / 5000) for s in range(5000)))
    specs, errors = discover([str(tmp_path / "tb"), str(tmp_path / "nope")])
    assert list(specs) == ["tb:tb/a"] and len(errors) == 1 and "does not exist" in errors[0]
    res = load_runs({**specs, "tb:gone": ("tensorboard", str(tmp_path / "gone"))})
    assert len(res.logs) == 1 and len(res.logs[0].df) == 5000
    assert res.errors == [("tb:gone", "no scalars yet")]
