"""Launcher: argv from validated fields (never a shell string), start in the background, stop gracefully."""
import time

import pytest

from actlab import UserError
from actlab.train import launcher
from actlab.store.runs import RunStore


def test_build_argv_from_fields():
    argv = launcher.build_argv("mnist", {"activation": "leaky_relu", "act_params": {"alpha": "0.05"}, "hidden": "64, 32",
                                         "lr": "0.01", "epochs": 2, "max_steps": None, "preset": "", "bf16": True,
                                         "compile": False}, name="r1", runs_dir="/tmp/r", python="py")
    assert argv == ["py", "-m", "actlab", "train", "mnist", "--activation", "leaky_relu", "--param", "alpha=0.05",
                    "--hidden", "64", "32", "--lr", "0.01", "--epochs", "2", "--bf16", "--name", "r1",
                    "--runs-dir", "/tmp/r"]


def test_built_argv_parses_with_the_real_cli():
    from actlab.cli import build_parser

    argv = launcher.build_argv("mnist", {"activation": "elu", "hidden": [8], "preset": "stress", "optimizer": "sgd"},
                               name="x")[3:]
    args = build_parser(argv).parse_args(argv)
    assert (args.activation, args.hidden, args.preset, args.optimizer, args.name) == ("elu", [8], "stress", "sgd", "x")


@pytest.mark.parametrize("fields,msg", [
    ({"shell": "rm -rf /"}, "no option 'shell'"),
    ({"lr": "abc"}, "expected a number"),
    ({"lr": "nan"}, "finite"),
    ({"lr": -1}, "outside"),
    ({"epochs": 1.5}, "integer"),
    ({"hidden": "64 abc"}, "integer"),
    ({"activation": "relu; rm -rf ~"}, "not one of"),
    ({"activation": "softmax"}, "not one of"),
    ({"norm": "--evil"}, "not one of"),
    ({"bf16": "yes"}, "true/false"),
    ({"act_params": {"a b": 1}}, "bad parameter name"),
    ({"act_params": "alpha=1"}, "mapping"),
])
def test_bad_fields_are_refused(fields, msg):
    with pytest.raises(UserError, match=msg):
        launcher.build_argv("mnist", fields)


def test_unknown_task_and_bad_name():
    with pytest.raises(UserError, match="unknown task"):
        launcher.build_argv("cifar", {})
    with pytest.raises(UserError, match="may not contain"):
        launcher.build_argv("mnist", {}, name="../etc")


def _wait_state(store, name, states, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if store.exists(name):
            r = store.open(name)
            st = r.status()
            r.close()
            if st.state in states:
                return st
        time.sleep(0.3)
    raise AssertionError(f"{name} never reached {states}; log: {(store.path(name) / 'train.log').read_text()[-2000:]}")


def test_start_runs_in_background_and_stop_is_graceful(tmp_path):
    store = RunStore(tmp_path / "runs")
    ck = str(tmp_path / "ck")
    name, pid = launcher.start("mnist", {"hidden": "16", "batch_size": 500, "epochs": 1000, "log_every": 2},
                               tmp_path / "runs", name="bg", checkpoints_dir=ck)
    assert name == "bg" and pid > 0
    try:
        _wait_state(store, "bg", {"running"})
        deadline = time.time() + 60
        while len(store.open("bg").scalars()[0]) < 10 and time.time() < deadline:
            time.sleep(0.2)
        assert launcher.stop("bg", tmp_path / "runs") == pid
        st = _wait_state(store, "bg", {"stopped", "failed", "finished"})
        assert st.state == "stopped"
        assert (tmp_path / "ck" / "bg" / "last.pt").exists()
        assert "Traceback" not in (store.path("bg") / "train.log").read_text()
        with pytest.raises(UserError, match="not running"):
            launcher.stop("bg", tmp_path / "runs")
        with pytest.raises(UserError, match="already exists"):
            launcher.start("mnist", {}, tmp_path / "runs", name="bg")
    finally:
        import os
        import signal

        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_stop_unknown_run(tmp_path):
    with pytest.raises(UserError, match="no run"):
        launcher.stop("ghost", tmp_path)
