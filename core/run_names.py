"""Run names: strict for a new run, looser (but never a path out of the store) for an existing one."""
from __future__ import annotations

from .argtypes import lookup_name_problem, run_name_problem
from .errors import UserError


def validate_run_name(name: str) -> str:
    """A new run's name: at most 100 characters of letters, digits and . _ + - (core.argtypes)."""
    problem = run_name_problem(name)
    if problem:
        raise UserError(f"invalid run name {str(name)[:40]!r}: {problem}")
    return name


def check_lookup_name(name: str) -> str:
    """An existing run's name: looser (older runs stay readable) but never a path out of the store."""
    problem = lookup_name_problem(name)
    if problem:
        raise UserError(f"invalid run name {str(name)[:40]!r}: {problem}")
    return name
