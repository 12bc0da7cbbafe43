"""`python -m core train <task>`: one module per task, sharing the pieces in loop.py."""
import importlib

TASKS = ["mnist", "biencoder"]


def add_cli(sub) -> None:
    p = sub.add_parser("train", help="train a model into the run store")
    s = p.add_subparsers(dest="task", required=True)
    for task in TASKS:
        importlib.import_module(f"core.train.{task}").add_cli(s)
