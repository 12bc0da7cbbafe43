"""Start and stop background training runs from validated form fields (the monitor page uses this).

Never a shell string: `build_argv` turns {field: value} into an argv list, refusing any field that
is not a known option of the task and any value that does not parse. A task is one entry of TASKS,
so adding one (e.g. "biencoder") is a small edit:

    TASKS["biencoder"] = {"epochs": Opt("--epochs", int, low=1), "head": Opt("--head", str, choices=[...]), ...}

`start` runs `python -m core train <task> ...` in a new session with its output in
<runs_dir>/<name>/train.log. `stop` sends SIGTERM: the trainer checkpoints and marks the run "stopped".
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import UserError
from ..store.runs import RunStore, check_lookup_name, validate_run_name


@dataclass(frozen=True)
class Opt:
    flag: str
    kind: type | str  # int, float, str, "flag" (on/off), "ints" (list), "params" (K=V dict)
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    extra: dict = field(default_factory=dict)


def _activation_names() -> list[str]:
    from ..activations import names

    return names(vector=False)


def _head_presets() -> list[str]:
    from ..models.biencoder import PRESETS

    return list(PRESETS)


TASKS: dict[str, dict[str, Opt]] = {
    "mnist": {
        "epochs": Opt("--epochs", int, low=1, high=1000),
        "max_steps": Opt("--max-steps", int, low=1),
        "lr": Opt("--lr", float, low=1e-8, high=10.0),
        "batch_size": Opt("--batch-size", int, low=1, high=65536),
        "activation": Opt("--activation", str, choices=None, extra={"choices_fn": _activation_names}),
        "act_params": Opt("--param", "params"),
        "hidden": Opt("--hidden", "ints", low=1, high=65536),
        "norm": Opt("--norm", str, choices=["none", "layernorm", "batchnorm"]),
        "init": Opt("--init", str, choices=["default", "he", "xavier"]),
        "optimizer": Opt("--optimizer", str, choices=["adam", "adamw", "sgd"]),
        "dropout": Opt("--dropout", float, low=0.0, high=0.99),
        "data": Opt("--data", str, choices=["bundled", "full"]),
        "preset": Opt("--preset", str, choices=["", "stress"]),
        "seed": Opt("--seed", int, low=0, high=2**31 - 1),
        "device": Opt("--device", str, choices=["auto", "cpu", "cuda"]),
        "log_every": Opt("--log-every", int, low=1, high=100000),
        "bf16": Opt("--bf16", "flag"),
        "compile": Opt("--compile", "flag"),
        "recycle_every": Opt("--recycle-every", int, low=1, high=10**9),
        "recycle_tau": Opt("--recycle-tau", float, low=0.0, high=1.0),
        "branch_from": Opt("--branch-from", "run"),
    },
    # Backbone and data are picked from fixed lists: the dashboard never passes a free path or hub name.
    "biencoder": {
        "backbone": Opt("--backbone", str, choices=["minilm", "tiny"]),
        "head": Opt("--head", str, choices=None, extra={"choices_fn": _head_presets}),
        "pooling": Opt("--pooling", str, choices=["cls", "mean"]),
        "data": Opt("--data", str, choices=["demo"]),
        "epochs": Opt("--epochs", int, low=1, high=1000),
        "max_steps": Opt("--max-steps", int, low=1),
        "batch_size": Opt("--batch-size", int, low=2, high=4096),
        "lr": Opt("--lr", float, low=1e-8, high=1.0),
        "triplet_margin": Opt("--triplet-margin", float, low=0.0, high=10.0),
        "ce_weight": Opt("--ce-weight", float, low=0.0, high=100.0),
        "max_length": Opt("--max-length", int, low=8, high=512),
        "freeze_backbone": Opt("--freeze-backbone", "flag"),
        "probe_backbone": Opt("--probe-backbone", "flag"),
        "seed": Opt("--seed", int, low=0, high=2**31 - 1),
        "device": Opt("--device", str, choices=["auto", "cpu", "cuda"]),
        "log_every": Opt("--log-every", int, low=1, high=100000),
    },
}


def _number(name: str, opt: Opt, value):
    integer = opt.kind in (int, "ints")
    try:
        if isinstance(value, bool) or (integer and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        v = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise UserError(f"{name}: expected a finite number, got {value!r}")
    if (opt.low is not None and v < opt.low) or (opt.high is not None and v > opt.high):
        raise UserError(f"{name}={v} is outside [{opt.low}, {opt.high}]")
    return v


def build_argv(task: str, fields: dict, name: str | None = None, runs_dir: str | None = None,
               checkpoints_dir: str | None = None, python: str = sys.executable) -> list[str]:
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    spec = TASKS[task]
    argv = [python, "-m", "actlab", "train", task]
    for key, value in fields.items():
        if key not in spec:
            raise UserError(f"{task} has no option {key!r}; allowed: {', '.join(spec)}")
        opt = spec[key]
        if value is None or value == "":
            continue
        if opt.kind == "flag":
            if not isinstance(value, bool):
                raise UserError(f"{key}: expected true/false, got {value!r}")
            if value:
                argv.append(opt.flag)
        elif opt.kind == "ints":
            values = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            if not values:
                raise UserError(f"{key}: expected one or more integers")
            argv += [opt.flag] + [str(_number(key, opt, v)) for v in values]
        elif opt.kind == "params":
            if not isinstance(value, dict):
                raise UserError(f"{key}: expected a mapping of parameter -> number")
            for k, v in value.items():
                if not str(k).isidentifier():
                    raise UserError(f"{key}: bad parameter name {k!r}")
                argv += [opt.flag, f"{k}={_number(f'{key}.{k}', Opt('', float), v)}"]
        elif opt.kind in (int, float):
            argv += [opt.flag, str(_number(key, opt, value))]
        elif opt.kind == "run":
            argv += [opt.flag, check_lookup_name(str(value))]
        else:
            choices = opt.choices if opt.choices is not None else opt.extra.get("choices_fn", lambda: None)()
            value = str(value)
            if choices is not None and value not in choices:
                raise UserError(f"{key}={value!r} is not one of {', '.join(c for c in choices if c)}")
            if value.startswith("-"):
                raise UserError(f"{key}={value!r} may not start with '-'")
            if value:
                argv += [opt.flag, value]
    if name is not None:
        argv += ["--name", validate_run_name(name)]
    if runs_dir is not None:
        argv += ["--runs-dir", str(runs_dir)]
    if checkpoints_dir is not None:
        argv += ["--checkpoints-dir", str(checkpoints_dir)]
    return argv


_CHILDREN: dict[int, subprocess.Popen] = {}


def start(task: str, fields: dict, runs_dir: str | os.PathLike, name: str | None = None,
          checkpoints_dir: str | None = None) -> tuple[str, int]:
    """Launch a background run; returns (run name, pid). Output goes to <runs_dir>/<name>/train.log."""
    store = RunStore(runs_dir)
    name = name or time.strftime(f"{task}-%Y%m%d-%H%M%S")
    validate_run_name(name)
    if store.exists(name):
        raise UserError(f"run {name!r} already exists; pick another name")
    if checkpoints_dir is None:
        checkpoints_dir = str(paths.checkpoints_dir(beside=runs_dir).resolve())
    argv = build_argv(task, fields, name=name, runs_dir=str(Path(runs_dir).resolve()),
                      checkpoints_dir=checkpoints_dir) + ["--no-progress"]
    run_dir = store.path(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    with open(run_dir / "train.log", "ab") as log:
        # The caller's working directory: `python -m actlab` needs no clone, and every path is absolute.
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    _reap()
    return name, proc.pid


# What a counterfactual branch may change (the diagnosis alerts offer these), per task.
# ("epochs": a branch may also train on past where the original stops.)
BRANCHABLE = {"mnist": ("recycle_every", "recycle_tau", "activation", "lr", "epochs")}


def branch(run: str, runs_dir: str | os.PathLike, overrides: dict, name: str | None = None,
           checkpoints_dir: str | None = None) -> tuple[str, int]:
    """Start a counterfactual: a new run from `run`'s latest checkpoint with `overrides` (e.g.
    {"recycle_every": 50}); the original run goes on untouched. Returns (branch name, pid)."""
    with RunStore(runs_dir).open(run) as reader:
        kind, cfg = reader.meta.get("kind", ""), reader.config
    if kind not in BRANCHABLE:
        raise UserError(f"run {run!r} ({kind or 'a watch() run'}) has no checkpoint of ours to branch from; "
                        "only runs of the built-in MNIST trainer can branch")
    bad = set(overrides) - set(BRANCHABLE[kind])
    if bad:
        raise UserError(f"a branch may change {', '.join(BRANCHABLE[kind])}; not {', '.join(sorted(bad))}")
    ckdir = checkpoints_dir or cfg.get("checkpoints_dir") or paths.checkpoints_dir(beside=runs_dir)
    if not (Path(ckdir) / run / "last.pt").is_file():
        raise UserError(f"run {run!r} has no checkpoint yet (one is written at each epoch end); try again after its first epoch")
    suffix = "-".join(f"{k.replace('_', '')}{v}" for k, v in overrides.items())[:40] or "copy"
    name = name or f"{run[:50]}-{suffix}-{time.strftime('%H%M%S')}"
    return start(kind, {"branch_from": run, **overrides}, runs_dir, name=name, checkpoints_dir=str(Path(ckdir).resolve()))


def _reap():
    """Collect finished children so they do not linger as zombies in a long-lived dashboard."""
    for pid, p in list(_CHILDREN.items()):
        if p.poll() is not None:
            del _CHILDREN[pid]


def stop(name: str, runs_dir: str | os.PathLike) -> int:
    """SIGTERM the run's trainer (it checkpoints, then sets status "stopped"). Returns the pid."""
    with RunStore(runs_dir).open(name) as reader:
        st = reader.status()
    if st.state != "running" or not st.pid:
        raise UserError(f"run {name!r} is not running (status: {st.state})")
    try:
        os.kill(st.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise UserError(f"run {name!r}: trainer process {st.pid} is already gone") from None
    _reap()
    return st.pid
