"""`actlab <command> ...` (or `python -m actlab`): everything the dashboard does is scriptable from here."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UserError

# One module per command, each with its add_cli; imported lazily so `activations list` never loads
# transformers.
COMMANDS = {name: f".{name}" for name in
            ("activations", "bench", "train", "runs", "ablate", "logs", "eval", "claims", "dashboard")}


class Parser(argparse.ArgumentParser):
    """A bad flag is one line, `error: argument --lr: ...`, and exit code 2 (sub-commands inherit
    this class through add_subparsers)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(prog="actlab", description="ActLab command line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, module in COMMANDS.items():
        if wanted == name == "train":
            importlib.import_module(module, __package__).add_cli(sub, argv[1:])
        elif wanted in (None, name):
            importlib.import_module(module, __package__).add_cli(sub)
        else:
            sub.add_parser(name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as e:  # a bad flag (2) or --help (0): a return code for in-process callers too
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


