"""`python -m core train <task>`: one module per task, sharing the pieces in loop.py."""
import importlib

TASKS = ["mnist", "biencoder"]


def add_cli(sub, rest: list[str] | None = None) -> None:
    """rest: the words after `train`. When they name a task, only that task's module is imported
    (the bi-encoder pulls in pandas and more, which `train mnist` never needs at start-up)."""
    p = sub.add_parser("train", help="train a model into the run store")
    s = p.add_subparsers(dest="task", required=True)
    wanted = rest[0] if rest and rest[0] in TASKS else None
    for task in TASKS:
        if wanted in (None, task):
            importlib.import_module(f".{task}", __package__).add_cli(s)
        else:
            s.add_parser(task)
