"""`actlab train mnist|biencoder`: the flags come from core/train/config.py; the trainers load only
when a run starts (building the parser imports neither torch models nor transformers)."""
from __future__ import annotations

import os

from .. import paths
from ..store.runs import RunStore
from ..train.config import BIENCODER, MNIST

# What `ablate biencoder` leaves out: the grid sets the name, seed and head of every run, and a grid never resumes.
_GRID_SETS = ("name", "seed", "resume", "head")


def add_cli(sub, rest: list[str] | None = None) -> None:
    """rest: the words after `train`. When they name a task, only that task's flags are built."""
    p = sub.add_parser("train", help="train a model into the run store")
    s = p.add_subparsers(dest="task", required=True)
    wanted = rest[0] if rest and rest[0] in ("mnist", "biencoder") else None
    for task, add in (("mnist", add_mnist), ("biencoder", add_biencoder)):
        if wanted in (None, task):
            add(s)
        else:
            s.add_parser(task)


def add_mnist(sub) -> None:
    p = sub.add_parser("mnist", help="MLP on MNIST with live dead-unit probes")
    MNIST.add_arguments(p)
    p.set_defaults(func=train_mnist)


def add_biencoder(sub) -> None:
    p = sub.add_parser("biencoder", help="BERT bi-encoder for argument/counter-argument retrieval")
    add_biencoder_args(p)
    p.set_defaults(func=train_biencoder)


def add_biencoder_args(p, ablation: bool = False) -> None:
    """Options of `train biencoder`; `ablate biencoder` takes the same minus name/seed/resume/head."""
    BIENCODER.add_arguments(p, tuple(o.key for o in BIENCODER.options if not (ablation and o.key in _GRID_SETS)))


def train_mnist(args) -> int:
    from ..train import mnist

    name = mnist.train_mnist(mnist.config_from_args(args))
    st = RunStore(args.runs_dir or paths.runs_dir()).summary(name)
    acc = st["last"].get("acc/test")
    print(f"run {name}: {st['status']}" + (f" ({st['reason']})" if st["reason"] else "")
          + (f", test accuracy {acc:.4f}" if acc is not None else ""))
    return 0 if st["status"] in ("finished", "stopped") else 1


def train_biencoder(args) -> int:
    from ..models.biencoder import parse_head_spec
    from ..train import biencoder

    cfg = biencoder.config_from_args(args)
    parse_head_spec(cfg["head"])  # a bad spec fails before the backbone loads
    name = biencoder.train_biencoder(cfg)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"run {name} in {cfg['runs_dir']}")
    return 0
