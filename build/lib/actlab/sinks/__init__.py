"""Sinks: what watch() measures, mirrored into the tracker a team already uses.

    watch(model, sinks=["tensorboard:tb_logs", "mlflow", "wandb"])

  tensorboard[:DIR]           SummaryWriter into DIR/<run> (DIR defaults to ./tensorboard)
  mlflow[:TRACKING_URI]       MlflowClient on that URI (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)
  wandb[:PROJECT]             wandb.init(project=PROJECT) (default: WANDB_PROJECT, else actlab); WANDB_MODE as usual

Each sink is a WatchPlugin; a Sink object can be passed in the list as well as a string.
"""
from __future__ import annotations

from ..errors import UserError
from .base import Sink, SinkItem, event_text, item_from_record
from .trackers import MlflowSink, TensorBoardSink, WandbSink, default_mlflow_uri, mlflow_key

KINDS = {"tensorboard": TensorBoardSink, "mlflow": MlflowSink, "wandb": WandbSink}
SPEC_HELP = "use tensorboard[:DIR], mlflow[:TRACKING_URI] or wandb[:PROJECT]"


def parse_sink(spec) -> Sink:
    """'tensorboard:DIR' / 'mlflow' / 'mlflow:URI' / 'wandb:PROJECT', or a Sink as it is."""
    if isinstance(spec, Sink):
        return spec
    if not isinstance(spec, str):
        raise UserError(f"sinks: expected a string like 'tensorboard:DIR', got {type(spec).__name__} {spec!r}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise UserError(f"sinks: unknown sink {spec!r} ({SPEC_HELP})")
    arg = arg.strip()
    if sep and not arg:
        raise UserError(f"sinks: {spec!r} names no {'folder' if kind == 'tensorboard' else 'value'} after the colon ({SPEC_HELP})")
    if kind == "tensorboard":
        return TensorBoardSink(arg or "tensorboard")
    if kind == "mlflow":
        return MlflowSink(arg or None)
    return WandbSink(arg or None)


def parse_sinks(specs) -> list[Sink]:
    if specs is None:
        return []
    if isinstance(specs, (str, Sink)):
        specs = [specs]
    try:
        items = list(specs)
    except TypeError:
        raise UserError(f"sinks: expected a list like ['tensorboard:DIR', 'mlflow'], got {specs!r}") from None
    return [parse_sink(s) for s in items]


def from_report_to(report_to, logging_dir: str | None = None) -> list[str]:
    """Sink specs for a Hugging Face TrainingArguments.report_to: the trackers we mirror into
    (TensorBoard in the Trainer's logging_dir); the others (comet, neptune, ...) are left alone."""
    if report_to is None or report_to == "none":
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if "all" in names:
        names = list(KINDS)
    out = []
    for n in names:
        if n == "tensorboard":
            out.append(f"tensorboard:{logging_dir}" if logging_dir else "tensorboard")
        elif n in ("mlflow", "wandb"):
            out.append(n)
    return out


__all__ = ["Sink", "SinkItem", "TensorBoardSink", "MlflowSink", "WandbSink", "parse_sink", "parse_sinks",
           "from_report_to", "event_text", "item_from_record", "default_mlflow_uri", "mlflow_key"]
