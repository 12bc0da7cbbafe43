"""Every flag of `python -m core`: a bad value is one `error: argument --flag: ...` line, exit code 2,
no traceback, nothing written. In-process (fast) for the whole table, and a few real processes."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actlab import argtypes as T
from actlab.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
LONG = "r" * 300

# command prefix -> [(flag, bad value), ...]
BAD = {
    ("activations", "eval", "relu", "--x", "1"): [
        ("--x", "nan"), ("--x", "inf"), ("--x", "abc"), ("--param", "alpha=nan"), ("--param", "=1")],
    ("bench", "activations"): [
        ("--numel", "0"), ("--numel", "-5"), ("--numel", "1.5"), ("--repeats", "0"), ("--warmup", "-1"),
        ("--threads", "0")],
    ("train", "mnist"): [
        ("--epochs", "0"), ("--epochs", "-1"), ("--lr", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--lr", "inf"),
        ("--batch-size", "0"), ("--seed", "-1"), ("--log-every", "0"), ("--max-steps", "0"),
        ("--hidden", "0"), ("--hidden", "-3"), ("--init-bias", "nan"), ("--init-bias", "-inf"),
        ("--dropout", "1"), ("--dropout", "-0.1"), ("--dropout", "nan"), ("--weight-decay", "-1"),
        ("--weight-decay", "nan"), ("--param", "negative_slope=inf"), ("--name", LONG), ("--name", "a/b"),
        ("--name", ".."), ("--name", "x\x00y"), ("--name", "bad name"), ("--name", "-dash"), ("--name", ".hidden"),
        ("--resume", "../up"), ("--resume", "a/b"), ("--threads", "-1"), ("--threads", "1.5")],
    ("train", "biencoder"): [
        ("--epochs", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--batch-size", "0"), ("--seed", "-1"),
        ("--log-every", "0"), ("--max-steps", "-2"), ("--head-dim", "0"), ("--max-length", "0"),
        ("--test-fraction", "0"), ("--test-fraction", "1"), ("--weight-decay", "-1"), ("--triplet-margin", "-1"),
        ("--ce-weight", "nan"), ("--eps", "-0.5"), ("--name", LONG), ("--name", "../x"), ("--resume", "..")],
    ("runs", "show"): [("run", "../x"), ("run", ".."), ("run", LONG)],
    ("ablate", "biencoder"): [
        ("--seeds", "0"), ("--epochs", "0"), ("--lr", "0"), ("--batch-size", "0"), ("--max-steps", "0"),
        ("--weight-decay", "-1"), ("--grid", "a/b"), ("--grid", LONG), ("--parallel", "0"), ("--backend", "dask")],
    ("ablate", "mnist"): [
        ("--seeds", "0"), ("--epochs", "0"), ("--max-steps", "-1"), ("--grid", "x..y"), ("--parallel", "0"),
        ("--parallel", "1.5"), ("--backend", "ray1")],
    ("logs", "summarize", "f.log"): [("--alpha", "1.5"), ("--alpha", "0"), ("--alpha", "nan")],
    ("eval", "biencoder", "--data", "x"): [
        ("--max-length", "0"), ("--batch-size", "-1"), ("--max-docs", "0"), ("--max-queries", "1.5"),
        ("--seed", "-1")],
}
CASES = [(cmd, flag, value) for cmd, bad in BAD.items() for flag, value in bad]


def _argv(cmd, flag, value):
    if flag == "run":  # positional
        return [*cmd, value]
    return [*cmd, f"{flag}={value}" if value.startswith("-") else flag, *([] if value.startswith("-") else [value])]


@pytest.mark.parametrize("cmd, flag, value", CASES, ids=[f"{' '.join(c[:2])} {f} {v[:12]!r}" for c, f, v in CASES])
def test_bad_flag_is_one_line_exit_2(tmp_path, capsys, monkeypatch, cmd, flag, value):
    monkeypatch.chdir(tmp_path)  # nothing may be written, here or in the runs folder
    monkeypatch.setenv("ACTLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ACTLAB_CHECKPOINTS_DIR", str(tmp_path / "ck"))
    rc = main(_argv(cmd, flag, value))
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: argument ")
    assert (flag if flag.startswith("--") else "run") in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, flag", [
    (["train", "mnist", "--name", LONG], "--name"),
    (["train", "mnist", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "mnist", "--init-bias", "nan"], "--init-bias"),
])
def test_bad_flag_in_a_real_process(tmp_path, argv, flag):
    env = dict(os.environ, PYTHONPATH=str(ROOT), ACTLAB_RUNS_DIR=str(tmp_path / "runs"),
               ACTLAB_CHECKPOINTS_DIR=str(tmp_path / "ck"))
    r = subprocess.run([sys.executable, "-m", "actlab", *argv], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: argument {flag}: ")
    assert list(tmp_path.iterdir()) == []  # no run folder, no checkpoint


def _actions(parser, path=()):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _actions(sub, (*path, name))
        else:
            yield path, a


def test_every_numeric_and_name_flag_has_a_checked_type():
    """No bare int/float: a new flag without a checked type fails here."""
    actions = list(_actions(build_parser([])))
    assert len(actions) > 60
    names = {"name", "resume", "grid", "run"}
    checked = {T.positive_int, T.non_negative_int, T.finite_float, T.positive_float, T.non_negative_float,
               T.probability, T.open_unit, T.key_value, T.run_name, T.existing_run_name, T.port}
    for path, a in actions:
        where = f"{' '.join(path)} {a.option_strings or a.dest}"
        assert a.type not in (int, float), where
        if (a.dest in names and path != ("activations", "eval")) or a.dest == "param":
            assert a.type in checked, where
        if isinstance(a.default, (int, float)) and not isinstance(a.default, bool):
            assert a.type in checked, where


@pytest.mark.parametrize("fn, good, bad", [
    (T.positive_int, ["1", "64"], ["0", "-1", "1.5", "x", ""]),
    (T.non_negative_int, ["0", "7"], ["-1", "nan"]),
    (T.port, ["1", "8501", "65535"], ["0", "65536", "-1", "x"]),
    (T.finite_float, ["-1e3", "0", "2.5"], ["nan", "inf", "-Infinity", "x"]),
    (T.positive_float, ["1e-8", "3"], ["0", "-1e-3", "inf"]),
    (T.non_negative_float, ["0", "0.01"], ["-1", "nan"]),
    (T.probability, ["0", "0.5", "0.99"], ["1", "-0.1", "nan"]),
    (T.open_unit, ["0.05", "0.2"], ["0", "1", "nan"]),
    (T.key_value, ["alpha=0.1", "k=-2"], ["alpha", "=1", "a=nan", "a=x"]),
    (T.run_name, ["mnist-relu_seed.1", "g-relu+layernorm-seed3", "r" * 100], ["r" * 101, "a/b", "a\\b", "..",
                                                                              "x..y", "x\x00y", ".h", "-x", "sp ace", "é"]),
    (T.existing_run_name, ["old name", "r" * 200], ["../x", "a/b", ".", "", "r" * 300]),
])
def test_types_accept_and_refuse(fn, good, bad):
    for g in good:
        fn(g)
    for b in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            fn(b)


def test_mnist_config_dict_is_checked_like_the_flags(tmp_path):
    """The ablation runner and the dashboard pass a dict, not flags: the same rules hold."""
    from actlab import UserError
    from actlab.train.mnist import train_mnist

    for bad, what in [({"init_bias": float("nan")}, "--init-bias"), ({"weight_decay": -1.0}, "--weight-decay"),
                      ({"dropout": 1.0}, "--dropout"), ({"name": "r" * 300}, "at most 100 characters")]:
        with pytest.raises(UserError, match=what):
            train_mnist({**bad, "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ck"),
                         "progress": False})
    assert not (tmp_path / "runs").exists()
