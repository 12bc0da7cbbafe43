"""Compare page (AppTest): TensorBoard runs from ACTLAB_TB_DIRS (or the monitor's sidebar) can be
picked beside uploads and store runs; every point is kept for the statistics."""
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "dashboard" / "views" / "compare.py")


def write_tb(folder: Path, final: float, n: int = 3000):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(folder))
    for s in range(n):
        w.add_scalar("acc/top1", final * (s + 1) / n, s)
    w.close()


def test_tensorboard_runs_picked_on_the_compare_page(runs_dir, tmp_path, monkeypatch):
    for variant, final in (("relu", 0.5), ("gelu", 0.7)):
        write_tb(tmp_path / "tb" / f"{variant}_seed1", final)
    monkeypatch.setenv("ACTLAB_TB_DIRS", str(tmp_path / "tb"))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    picker = at.multiselect(key="ext_runs")
    assert picker.options == ["tb:tb/gelu_seed1", "tb:tb/relu_seed1"]
    picker.select("tb:tb/gelu_seed1").select("tb:tb/relu_seed1").run()
    assert not at.exception, at.exception
    per_run = next(d.value for d in at.dataframe if d.editing_mode == "read_only" and "value" in d.value.columns
                   and "run" in d.value.columns)
    got = dict(zip(per_run["run"], per_run["value"]))
    assert got == pytest.approx({"tb:tb/gelu_seed1": 0.7, "tb:tb/relu_seed1": 0.5})
    curves = json.loads(next(e for e in at.get("plotly_chart") if e.proto.id.endswith("curves")).proto.spec)
    assert sum(len(t["x"]) if isinstance(t["x"], list) else 1 for t in curves["data"]) > 0


def test_no_external_settings_no_picker(runs_dir, monkeypatch):
    monkeypatch.delenv("ACTLAB_TB_DIRS", raising=False)
    monkeypatch.delenv("ACTLAB_MLFLOW_URI", raising=False)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    assert not [m for m in at.multiselect if m.key == "ext_runs"]


def test_bad_tb_dir_on_compare_page_one_line(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLAB_TB_DIRS", str(tmp_path / "missing"))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)
