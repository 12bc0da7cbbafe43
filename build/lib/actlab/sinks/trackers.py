"""The three trackers, each through its own library: TensorBoard (torch.utils.tensorboard's
SummaryWriter), MLflow (MlflowClient, any tracking URI) and Weights & Biases (wandb.init)."""
from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import numpy as np

from .base import Sink, SinkItem, event_text


class TensorBoardSink(Sink):
    """Scalars as add_scalar, pre-activation histograms as add_histogram_raw, events as add_text,
    into DIR/<run> (TensorBoard's own layout: one sub-folder per run)."""
    name, package = "tensorboard", "tensorboard"

    def __init__(self, log_dir: str | os.PathLike):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.writer = None

    def _open(self, run: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir / run))

    def _write(self, item: SinkItem) -> None:
        w = self.writer
        for k, v in item.scalars.items():
            w.add_scalar(k, v, item.step, walltime=item.wall_time)
        for k, (edges, counts) in item.histograms.items():
            if counts.sum() <= 0:
                continue
            mid = (edges[:-1] + edges[1:]) / 2  # the probes keep counts per bin, so moments are from bin centres
            n = float(counts.sum())
            w.add_histogram_raw(k, float(edges[0]), float(edges[-1]), n, float((mid * counts).sum()),
                                float((mid * mid * counts).sum()), edges[1:].tolist(), counts.tolist(),
                                item.step, walltime=item.wall_time)
        for e in item.events:
            w.add_text("actlab/events", event_text(e), item.step, walltime=item.wall_time)
        w.flush()  # each flush lands on disk, so a live TensorBoard (or our monitor) sees it

    def _close(self, status: str) -> None:
        self.writer.add_text("actlab/status", status, walltime=time.time())
        self.writer.close()


# MLflow metric keys: alphanumerics, underscores, dashes, periods, spaces, colons and slashes.
_MLFLOW_BAD = re.compile(r"[^\w\-. :/]")


def mlflow_key(key: str) -> str:
    return _MLFLOW_BAD.sub("_", key)


def default_mlflow_uri() -> str:
    """MLFLOW_TRACKING_URI when set (mlflow's own variable), else a SQLite store in the working
    folder: mlflow 3 refuses a plain ./mlruns folder store unless told otherwise."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


class MlflowSink(Sink):
    """Scalars as metrics (log_batch, up to 1000 a call), events as tags `actlab.event.<n>`, the
    run's end as its status. MLflow has no histograms."""
    name, package = "mlflow", "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None):
        super().__init__()
        self.tracking_uri = tracking_uri or default_mlflow_uri()
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "actlab"
        self.client = None
        self.run_id: str | None = None
        self._events = 0

    def _open(self, run: str) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
        self.run_id = client.create_run(exp_id, run_name=run, tags={"actlab.run": run}).info.run_id
        self.client = client

    def _write(self, item: SinkItem) -> None:
        from mlflow.entities import Metric, RunTag

        ms = int(item.wall_time * 1000)
        metrics = [Metric(mlflow_key(k), v, ms, item.step) for k, v in item.scalars.items() if not math.isnan(v)]
        tags = [RunTag(f"actlab.event.{self._events + i}", event_text(e)) for i, e in enumerate(item.events)]
        for i in range(0, max(len(metrics), 1), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000], tags=tags if i == 0 else [])
        self._events += len(tags)

    def _close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, {"finished": "FINISHED", "stopped": "KILLED"}.get(status, "FAILED"))


class WandbSink(Sink):
    """Scalars and histograms through run.log(step=...), events as `actlab/event` text rows and in
    the run's notes. WANDB_MODE decides online or offline, as wandb itself does."""
    name, package = "wandb", "wandb"

    def __init__(self, project: str | None = None, dir: str | os.PathLike | None = None):
        super().__init__()
        self.project = project or os.environ.get("WANDB_PROJECT") or "actlab"
        self.dir = dir
        self.wb_run = None

    def _open(self, run: str) -> None:
        import wandb

        self.wb_run = wandb.init(project=self.project, name=run, dir=None if self.dir is None else str(self.dir),
                                 reinit="create_new", settings=wandb.Settings(console="off", silent=True))

    def _write(self, item: SinkItem) -> None:
        import wandb

        data: dict = dict(item.scalars)
        for k, (edges, counts) in item.histograms.items():
            data[k] = wandb.Histogram(np_histogram=(np.asarray(counts), np.asarray(edges)))
        if item.events:
            text = "\n".join(event_text(e) for e in item.events)
            data["actlab/event"] = text
            self.wb_run.notes = ((self.wb_run.notes or "") + "\n" + text).strip()
        self.wb_run.log(data, step=item.step)

    def _close(self, status: str) -> None:
        self.wb_run.finish(exit_code=0 if status == "finished" else 1)
