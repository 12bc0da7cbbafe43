"""MLflow runs followed live through MlflowClient on any tracking URI (a SQLite file, a server,
a ./mlruns folder where the user's mlflow allows it).

MLflow has no "rows since" query, so each refresh asks for each metric's history and keeps the
points past the newest step already held; the page still only ever holds the downsampled frame.
A run deleted (or purged) while followed ends with a note; its points stay on the chart.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import UserError
from .frame import SeriesFrame, SourceStatus

# Runs listed per tracking URI (newest first): a server with thousands of runs is not listed whole.
MAX_RUNS = 200
_STATE = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished", "FAILED": "failed", "KILLED": "stopped"}


def client(uri: str):
    """An MlflowClient on `uri`, or a one-line UserError (mlflow missing, a URI it cannot open)."""
    uri = (uri or "").strip()
    if not uri:
        raise UserError("MLflow tracking URI is empty (e.g. sqlite:///mlflow.db or http://localhost:5000)")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("pip install mlflow-skinny to follow MLflow runs") from None
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as e:
        raise UserError(f"MLflow tracking URI {uri!r}: {_one_line(e)}") from None


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def find_runs(uri: str, max_runs: int = MAX_RUNS) -> dict[str, str]:
    """{'mlflow:<experiment>/<run name>': run id} for the active runs at `uri`, newest first."""
    c = client(uri)
    try:
        exps = {e.experiment_id: e.name for e in c.search_experiments()}
        runs = c.search_runs(list(exps), max_results=max_runs, order_by=["attributes.start_time DESC"]) if exps else []
    except Exception as e:
        raise UserError(f"MLflow tracking URI {uri!r}: {_one_line(e)}") from None
    out: dict[str, str] = {}
    for r in runs:
        name = f"mlflow:{exps.get(r.info.experiment_id, r.info.experiment_id)}/{r.info.run_name or r.info.run_id}"
        if name in out:  # two runs with one name: the run id tells them apart
            name = f"{name} ({r.info.run_id[:8]})"
        out[name] = r.info.run_id
    return out


class MlflowFollower:
    """One MLflow run, followed live; same attributes the monitor reads from a SeriesFollower."""
    kind = "mlflow"

    def __init__(self, name: str, uri: str, run_id: str, points: int = 800):
        self.name, self.uri, self.run_id = name, uri, run_id
        self.series = SeriesFrame(name, points)
        self.last_step: dict[str, int] = {}
        self.ended = False
        self.status = SourceStatus()
        self.config: dict = {"source": "mlflow", "tracking_uri": uri, "run_id": run_id}
        self.layers: dict = {}
        self.histograms: list[dict] = []
        self.units: list[dict] = []
        self._client = None

    @property
    def scalars(self) -> pd.DataFrame:
        return self.series.scalars

    @property
    def notes(self) -> list[str]:
        return self.series.notes

    def poll(self) -> int:
        if self.ended:
            return 0
        if self._client is None:
            self._client = client(self.uri)
        c = self._client
        try:
            run = c.get_run(self.run_id)
        except Exception as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(e, "error_code", "")) or "not found" in str(e).lower():
                return self._end("the MLflow run was deleted while followed: its series end here")
            raise UserError(f"{self.name}: {_one_line(e)}") from None
        if run.info.lifecycle_stage == "deleted":
            return self._end("the MLflow run was deleted while followed: its series end here")
        self.config["params"] = dict(run.data.params)
        rows = []
        for key in sorted(run.data.metrics):
            hist = c.get_metric_history(self.run_id, key)
            after = self.last_step.get(key, -math.inf)
            new = [(m.step, m.value, m.timestamp / 1000.0) for m in hist if m.step > after]
            if new:
                self.last_step[key] = max(s for s, _, _ in new)
                rows.append(pd.DataFrame(new, columns=["step", "value", "wall_time"]).assign(key=key))
        self.status = SourceStatus(_STATE.get(run.info.status, run.info.status.lower()),
                                   "; ".join(self.notes[-3:]) or None)
        if not rows:
            return 0
        df = pd.concat(rows, ignore_index=True).sort_values(["key", "step"], kind="stable")
        df["epoch"] = np.nan
        return self.series.add(df)

    def _end(self, note: str) -> int:
        self.ended = True
        self.series.notes.append(note)
        self.status = SourceStatus("ended", note)
        return 0
