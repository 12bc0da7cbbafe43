"""argparse types for every flag of `actlab`: a bad value is refused while parsing, so the
user gets one `error: argument --flag: ...` line and exit code 2, never a traceback or a run that
trains on NaN.

Each type takes the string from the command line and returns the parsed value, or raises
argparse.ArgumentTypeError with a message that says what was expected and what was given
(argparse prefixes it with the flag's name).
"""
from __future__ import annotations

import argparse
import math
import re

MAX_RUN_NAME = 100
# Letters, digits and . _ + - only, starting with a letter or digit: safe as a folder name on any
# OS, never read as a flag (leading '-') or a hidden file (leading '.'), nothing a shell expands.
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _bad(expected: str, text: str) -> argparse.ArgumentTypeError:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return argparse.ArgumentTypeError(f"expected {expected}, got {shown!r}")


def _int(text: str, expected: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise _bad(expected, text) from None


def _float(text: str, expected: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise _bad(expected, text) from None
    if not math.isfinite(v):  # float() accepts 'nan', 'inf', '-Infinity'
        raise _bad(expected, text)
    return v


def positive_int(text: str) -> int:
    """A count: 1, 2, 3, ..."""
    v = _int(text, "a positive integer")
    if v < 1:
        raise _bad("a positive integer", text)
    return v


def port(text: str) -> int:
    """A TCP port: 1..65535."""
    v = _int(text, "a port number (1-65535)")
    if not 1 <= v <= 65535:
        raise _bad("a port number (1-65535)", text)
    return v


def non_negative_int(text: str) -> int:
    """A seed or a warm-up count: 0, 1, 2, ..."""
    v = _int(text, "an integer >= 0")
    if v < 0:
        raise _bad("an integer >= 0", text)
    return v


def finite_float(text: str) -> float:
    """Any real number; refuses nan and inf."""
    return _float(text, "a finite number")


def positive_float(text: str) -> float:
    """A learning rate, a margin: finite and > 0."""
    v = _float(text, "a finite number > 0")
    if v <= 0:
        raise _bad("a finite number > 0", text)
    return v


def non_negative_float(text: str) -> float:
    """Weight decay, a loss weight, eps: finite and >= 0."""
    v = _float(text, "a finite number >= 0")
    if v < 0:
        raise _bad("a finite number >= 0", text)
    return v


def probability(text: str) -> float:
    """Dropout: in [0, 1) (p = 1 drops every unit)."""
    v = _float(text, "a number in [0, 1)")
    if not 0 <= v < 1:
        raise _bad("a number in [0, 1)", text)
    return v


def unit_interval(text: str) -> float:
    """A threshold on a ratio that may sit at either end (tau for tau-dormant units): [0, 1]."""
    v = _float(text, "a number in [0, 1]")
    if not 0 <= v <= 1:
        raise _bad("a number in [0, 1]", text)
    return v


def open_unit(text: str) -> float:
    """A fraction that must leave something on both sides (a test split, a significance level): (0, 1)."""
    v = _float(text, "a number in (0, 1)")
    if not 0 < v < 1:
        raise _bad("a number in (0, 1)", text)
    return v


def key_value(text: str) -> str:
    """`KEY=VALUE` with a finite number as the value. Returned unchanged (the command parses it)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise _bad("KEY=VALUE", text)
    try:
        v = float(value)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{key.strip()} needs a number, got {value[:40]!r} (nan and inf are refused)")
    return text


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot name a new run, or None. Shared by the flag type and the run store."""
    if not isinstance(name, str) or not name:
        return "a run name may not be empty"
    if "\x00" in name:
        return "a run name may not contain a NUL byte"
    if "/" in name or "\\" in name:
        return "a run name may not contain '/' or '\\'"
    if ".." in name:
        return "a run name may not contain '..'"
    if len(name) > MAX_RUN_NAME:
        return f"a run name has at most {MAX_RUN_NAME} characters, got {len(name)}"
    if not _RUN_NAME.fullmatch(name):
        return "a run name uses only letters, digits and . _ + - and starts with a letter or digit"
    return None


def lookup_name_problem(name: str) -> str | None:
    """Why `name` cannot name an existing run folder, or None. Looser than a new name (runs made
    before the character set was enforced stay readable) but never a path out of the store."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        return "a run name may not be empty, '.' or '..'"
    if "/" in name or "\\" in name or ".." in name or "\x00" in name:
        return "a run name may not contain '/', '\\', '..' or a NUL byte"
    if name.startswith("."):
        return "a run name may not start with '.'"
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        return "a run name has at most 255 bytes"
    return None


def _shown(text: str) -> str:
    return repr(text[:40]) + ("..." if len(text) > 40 else "")


def run_name(text: str) -> str:
    """--name: the name of a new run."""
    problem = run_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}; got {_shown(text)}")
    return text


def existing_run_name(text: str) -> str:
    """--resume RUN, `runs show RUN`: a run that should already exist."""
    problem = lookup_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}; got {_shown(text)}")
    return text
