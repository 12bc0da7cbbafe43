"""Where ActLab keeps things on disk: runs, checkpoints, caches, benchmark results.

The one reader of ActLab's folder settings. Every function reads the environment when called, not
at import, so a test, the dashboard or a user's script can point a variable elsewhere after
`import actlab`. Relative paths stay relative (to the working directory of the caller).

    ACTLAB_RUNS_DIR         run store folder                      (default: runs)
    ACTLAB_CHECKPOINTS_DIR  trainers' <run>/last.pt               (default: checkpoints, see below)
    ACTLAB_CACHE_DIR        digits, BEIR downloads, backbone features ($XDG_CACHE_HOME/actlab)
    ACTLAB_RESULTS_DIR      benchmark / claims JSON               (the clone's bench/results)
"""
from __future__ import annotations

import os
from pathlib import Path

RUNS_ENV = "ACTLAB_RUNS_DIR"
CHECKPOINTS_ENV = "ACTLAB_CHECKPOINTS_DIR"
CACHE_ENV = "ACTLAB_CACHE_DIR"
RESULTS_ENV = "ACTLAB_RESULTS_DIR"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def runs_dir() -> Path:
    """The run store folder: ACTLAB_RUNS_DIR, else ./runs."""
    return Path(_env(RUNS_ENV) or "runs")


def checkpoints_dir(beside: str | os.PathLike | None = None) -> Path:
    """ACTLAB_CHECKPOINTS_DIR, else `checkpoints/` next to the runs folder `beside` (runs/ ->
    checkpoints/, so a temporary runs folder keeps its checkpoints with it), else ./checkpoints."""
    env = _env(CHECKPOINTS_ENV)
    if env:
        return Path(env)
    if beside is not None:
        return Path(beside).resolve().parent / "checkpoints"
    return Path("checkpoints")


def cache_dir() -> Path:
    """ACTLAB_CACHE_DIR, else $XDG_CACHE_HOME/actlab, else ~/.cache/actlab."""
    env = _env(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(_env("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "actlab"


def repo_root() -> Path | None:
    """The clone this copy of ActLab runs from, or None for an installed copy (site-packages has
    no pyproject.toml beside the package folder)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "core").is_dir() else None


def results_dir() -> Path:
    """ACTLAB_RESULTS_DIR, else the clone's bench/results, else ./bench/results (an installed copy
    run from a clone's root finds the committed results there)."""
    env = _env(RESULTS_ENV)
    if env:
        return Path(env)
    root = repo_root()
    if root is not None and (root / "bench" / "results").is_dir():
        return root / "bench" / "results"
    return Path("bench") / "results"
