"""Run store: names, CLI list/show --json, incremental follower."""
import json

import pytest

from core import UserError
from core.__main__ import main
from core.runs import RunFollower, RunStore, validate_run_name


@pytest.mark.parametrize("bad", ["/", "..", ".", "", "a/b", "a\\b", "x\x00y", "../up", ".hidden"])
def test_bad_names_refused(bad):
    with pytest.raises(UserError):
        validate_run_name(bad)


def test_good_names_pass():
    assert validate_run_name("mnist-relu_seed.1") == "mnist-relu_seed.1"


def test_cli_bad_name_one_line_exit_2(tmp_path, capsys):
    assert main(["runs", "show", "../x", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert main(["runs", "show", "ghost", "--runs-dir", str(tmp_path)]) == 2


def _make(root, name, state="finished"):
    w = RunStore(root).create(name, {"lr": 0.1, "activation": "relu"}, kind="mnist")
    w.log_scalars(1, {"loss/train": 2.0, "dead/act1": 0.1})
    w.log_scalars(2, {"loss/train": 1.5, "dead/act1": 0.2})
    w.set_status(state, "because" if state == "failed" else None)
    w.close()


def test_runs_list_and_show_json(tmp_path, capsys):
    _make(tmp_path, "a")
    _make(tmp_path, "b", "failed")
    assert main(["runs", "list", "--runs-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["status"] for r in rows} == {"a": "finished", "b": "failed"}
    assert main(["runs", "show", "b", "--runs-dir", str(tmp_path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["status"] == "failed" and s["reason"] == "because"
    assert s["config"] == {"lr": 0.1, "activation": "relu"}
    assert s["last"] == {"dead/act1": 0.2, "loss/train": 1.5}
    assert main(["runs", "show", "a", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a: finished" in out and "loss/train" in out and "1.5" in out


def test_follower_reads_only_new_rows(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("f", {})
    w.log_scalars(1, {"x": 1.0})
    w.log_histogram(1, "pre/a", [0, 1], [3])
    f = RunFollower(store, "f")
    assert f.poll() == 2 and f.scalars.value.tolist() == [1.0]
    assert f.poll() == 0
    w.log_scalars(2, {"x": 2.0, "y": 5.0})
    w.log_unit_activity(2, "a", [0.5, 0.0])
    assert f.poll() == 3
    assert f.scalars.value.tolist() == [1.0, 2.0, 5.0]
    assert f.units[0]["values"] == [0.5, 0.0] and f.status.state == "running"


def test_create_over_existing_run_refused_but_launcher_log_folder_allowed(tmp_path):
    _make(tmp_path, "dup")
    with pytest.raises(UserError, match="already exists"):
        RunStore(tmp_path).create("dup", {})
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "train.log").write_text("starting\n")
    RunStore(tmp_path).create("fresh", {}).close()
    assert (tmp_path / "fresh" / "train.log").read_text() == "starting\n"
