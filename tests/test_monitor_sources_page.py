"""Monitor page with external runs (AppTest): TensorBoard folders from the sidebar or ACTLAB_TB_DIRS,
MLflow runs from a tracking URI; the charts carry their points; bad inputs give one line each."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from actlab.dashboard.charts.smoothing import ema
from actlab.store.runs import RunStore

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "views" / "monitor.py")


def chart(at, key):
    e = next((e for e in at.get("plotly_chart") if e.proto.id.endswith(key)), None)
    return None if e is None else json.loads(e.proto.spec)


def xy(fig, name):
    t = next(t for t in fig["data"] if t.get("name") == name)
    return list(t["x"]), list(t["y"])


def write_tb(folder: Path, n: int, start: int = 0):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(folder))
    for s in range(start, start + n):
        w.add_scalar("train/loss", 1.0 / (s + 1), s)
        w.add_scalar("dead/fc1", s / 100, s)
    w.close()


def page(monkeypatch, tb_dirs: str | None = None):
    if tb_dirs is not None:
        monkeypatch.setenv("ACTLAB_TB_DIRS", tb_dirs)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_tensorboard_folder_from_sidebar_listed_and_charted(runs_dir, tmp_path, monkeypatch):
    write_tb(tmp_path / "tb" / "exp1", 5)
    at = page(monkeypatch)
    assert any("No runs" in i.value for i in at.info)
    at.sidebar.text_area(key="mon_tb_dirs").input(str(tmp_path / "tb")).run()
    assert not at.exception, at.exception
    assert "tb:tb/exp1" in at.multiselect(key="mon_runs").options
    assert at.multiselect(key="mon_runs").value == ["tb:tb/exp1"]
    # Its own key names in the scalars chart; dead/ keys in the standard dead chart.
    assert xy(chart(at, "chart_ext"), "tb:tb/exp1 train/loss") == ([0, 1, 2, 3, 4], pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5]))
    assert xy(chart(at, "chart_dead"), "tb:tb/exp1 dead/fc1")[1] == pytest.approx([0, 0.01, 0.02, 0.03, 0.04])
    assert at.multiselect(key="mon_ext_keys").value == ["train/loss"]
    assert [b.label for b in at.button] == ["Start training"]  # no Stop / recycle for a run we do not drive
    # Smoothing and the x-axis apply as for our runs.
    at.sidebar.slider(key="mon_smoothing").set_value(0.5).run()
    y = xy(chart(at, "chart_ext"), "tb:tb/exp1 train/loss")[1]
    assert y == pytest.approx(ema([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5], 0.5).tolist()) and y[1] != 0.5
    at.sidebar.radio(key="mon_x").set_value("wall_time").run()
    x = xy(chart(at, "chart_ext"), "tb:tb/exp1 train/loss")[0]
    assert x[0] == 0 and x == sorted(x) and x[-1] < 60


def test_foreign_keys_only_no_empty_standard_charts(runs_dir, tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb" / "theirs"))
    for s in range(3):
        w.add_scalar("Loss/train", 1.0 - s / 10, s)
    w.close()
    at = page(monkeypatch, str(tmp_path / "tb"))
    assert chart(at, "chart_loss") is None and chart(at, "chart_dead") is None
    assert xy(chart(at, "chart_ext"), "tb:tb/theirs Loss/train")[1] == pytest.approx([1.0, 0.9, 0.8])


def test_new_points_and_a_deleted_file(runs_dir, tmp_path, monkeypatch):
    write_tb(tmp_path / "tb" / "exp1", 3)
    at = page(monkeypatch, str(tmp_path / "tb"))
    assert xy(chart(at, "chart_ext"), "tb:tb/exp1 train/loss")[0] == [0, 1, 2]
    write_tb(tmp_path / "tb" / "exp1", 2, start=3)  # a restarted writer: a second event file
    at.run()
    assert xy(chart(at, "chart_ext"), "tb:tb/exp1 train/loss")[0] == [0, 1, 2, 3, 4]
    for ev in (tmp_path / "tb" / "exp1").iterdir():
        ev.unlink()
    at.run()
    assert not at.exception
    assert xy(chart(at, "chart_ext"), "tb:tb/exp1 train/loss")[0] == [0, 1, 2, 3, 4]
    assert any("was deleted while followed" in c.value for c in at.caption)


def test_tb_and_store_runs_side_by_side(runs_dir, tmp_path, monkeypatch):
    w = RunStore(runs_dir).create("ours", {"activation": "relu"}, kind="watch")
    w.log_scalars(10, {"dead/act": 0.5})
    w.set_status("finished")
    write_tb(tmp_path / "tb" / "exp1", 2)
    at = page(monkeypatch, str(tmp_path / "tb"))
    assert at.multiselect(key="mon_runs").options == ["ours", "tb:tb/exp1"]
    at.multiselect(key="mon_runs").select("tb:tb/exp1").run()
    fig = chart(at, "chart_dead")
    assert xy(fig, "ours dead/act") == ([10], [0.5])
    assert xy(fig, "tb:tb/exp1 dead/fc1")[0] == [0, 1]


@pytest.mark.parametrize("text, msg", [
    ("/nonexistent/actlab-tb", "TensorBoard folder /nonexistent/actlab-tb does not exist"),
    ("FILE", "is a file, not a folder")])
def test_bad_tensorboard_folder_one_line(runs_dir, tmp_path, monkeypatch, text, msg):
    (tmp_path / "f").write_text("x")
    at = page(monkeypatch)
    at.sidebar.text_area(key="mon_tb_dirs").input(text.replace("FILE", str(tmp_path / "f"))).run()
    assert not at.exception
    assert any(msg in e.value and "\n" not in e.value for e in at.error)


def test_too_many_event_files_refused_with_the_limit(runs_dir, tmp_path, monkeypatch):
    d = tmp_path / "tb" / "run"
    d.mkdir(parents=True)
    for i in range(4):
        (d / f"events.out.tfevents.{i}.h").touch()
    monkeypatch.setenv("ACTLAB_TB_MAX_FILES", "3")
    at = page(monkeypatch, str(tmp_path / "tb"))
    assert any("more than 3 event files" in e.value and "ACTLAB_TB_MAX_FILES" in e.value for e in at.error)


LOG_RUN = """
import sys
from mlflow.tracking import MlflowClient
c = MlflowClient(tracking_uri=sys.argv[1])
r = c.create_run(c.create_experiment("theirs"), run_name="bert")
for s in range(4):
    c.log_metric(r.info.run_id, "eval/loss", 2.0 - s * 0.5, step=s * 10)
print(r.info.run_id)
"""


def test_mlflow_run_from_another_process_appears(runs_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = subprocess.run([sys.executable, "-c", LOG_RUN, uri], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert out.returncode == 0, out.stderr[-2000:]
    at = page(monkeypatch)
    at.sidebar.text_input(key="mon_mlflow_uri").input(uri).run()
    assert not at.exception, at.exception
    assert at.multiselect(key="mon_runs").value == ["mlflow:theirs/bert"]
    assert xy(chart(at, "chart_ext"), "mlflow:theirs/bert eval/loss") == ([0, 10, 20, 30], [2.0, 1.5, 1.0, 0.5])


@pytest.mark.parametrize("uri, msg", [("nosuchscheme://x", "MLflow tracking URI 'nosuchscheme://x'")])
def test_bad_mlflow_uri_one_line(runs_dir, monkeypatch, uri, msg):
    pytest.importorskip("mlflow")
    at = page(monkeypatch)
    at.sidebar.text_input(key="mon_mlflow_uri").input(uri).run()
    assert not at.exception
    assert any(msg in e.value and "\n" not in e.value for e in at.error)
