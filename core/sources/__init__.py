"""Live sources: runs written by other tools, followed on the monitor beside ActLab's own.

    specs, errors = discover(["tb_logs"], "sqlite:///mlflow.db")   # {name: spec}, one-line problems
    f = open_follower(name, specs[name], points=700)               # then f.poll() on every refresh

  tensorboard.py  every folder holding event files under a folder the user adds (or ACTLAB_TB_DIRS)
  mlflow.py       the runs at an MLflow tracking URI
A follower has the attributes the monitor reads from the store's SeriesFollower (name, scalars,
status, config, layers, histograms, units) plus `kind` and `notes`.
"""
from __future__ import annotations

from ..errors import UserError
from . import mlflow, tensorboard
from .frame import SeriesFrame, SourceStatus
from .mlflow import MlflowFollower
from .tensorboard import TensorBoardFollower


def parse_dirs(text: str) -> list[str]:
    """Folders from a text box: one per line (blank lines and surrounding spaces ignored)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def discover(tb_dirs: list[str], mlflow_uri: str = "") -> tuple[dict[str, tuple], list[str]]:
    """{run name: spec} over every TensorBoard folder and the MLflow URI, and what could not be
    read (one line each: a missing folder, too many event files, a URI mlflow cannot open)."""
    specs: dict[str, tuple] = {}
    errors: list[str] = []
    for d in dict.fromkeys(tb_dirs):
        try:
            for name, folder in tensorboard.find_runs(d).items():
                if name in specs:  # two added folders with one base name
                    name = f"{name} [{folder}]"
                specs[name] = ("tensorboard", str(folder))
        except UserError as e:
            errors.append(str(e))
    if (mlflow_uri or "").strip():
        try:
            for name, run_id in mlflow.find_runs(mlflow_uri.strip()).items():
                specs[name] = ("mlflow", mlflow_uri.strip(), run_id)
        except UserError as e:
            errors.append(str(e))
    return specs, errors


def load_runs(specs: dict[str, tuple]):
    """The runs as the compare page's LoadResult, every point kept (statistics read final and best
    values from full series): TensorBoard through the upload reader, MLflow through the follower
    without thinning. A run that cannot be read is an error naming it; the others still load."""
    from ..logs.parsed import LoadResult, ParsedLog
    from ..store.runs import SCALAR_COLUMNS

    res = LoadResult()
    for name, spec in specs.items():
        f = open_follower(name, spec, points=1 << 62)  # no thinning
        try:
            f.poll()
        except (UserError, OSError) as e:
            res.errors.append((name, str(e)))
            continue
        if not len(f.scalars):
            res.errors.append((name, "no scalars yet"))
            continue
        log = ParsedLog(name, f"{spec[0]}-live", f.scalars[SCALAR_COLUMNS].reset_index(drop=True),
                        warnings=[f"{name}: {w}" for w in getattr(f, "warnings", [])] + [f"{name}: {n}" for n in f.notes])
        if spec[0] == "mlflow":
            log.variant_hint = (None, _int(f.config.get("params", {}).get("seed")))
        res.logs.append(log)
    return res


def _int(v) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError, OverflowError):
        return None


def open_follower(name: str, spec: tuple, points: int = 800):
    if spec[0] == "tensorboard":
        return TensorBoardFollower(name, spec[1], points=points)
    if spec[0] == "mlflow":
        return MlflowFollower(name, spec[1], spec[2], points=points)
    raise UserError(f"unknown source kind {spec[0]!r}")


__all__ = ["discover", "load_runs", "open_follower", "parse_dirs", "SeriesFrame", "SourceStatus", "TensorBoardFollower",
           "MlflowFollower"]
