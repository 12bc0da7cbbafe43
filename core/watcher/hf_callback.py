"""`Trainer(..., callbacks=[ActLabCallback(run="bert-run")])`: the Hugging Face Trainer under watch().

Its own module, loaded when first asked for (`from actlab import ActLabCallback` works),
so that importing core.watch does not import transformers.
"""
from __future__ import annotations

from ..sinks import from_report_to
from .watcher import Watcher, watch


def _trainer_callback_base():
    try:
        from transformers import TrainerCallback
    except Exception:  # transformers missing: the callback cannot be used, watch() still can
        return object
    return TrainerCallback


def _tensorboard_dir(args) -> str | None:
    """Where the Trainer's own TensorBoard callback writes: TrainingArguments.logging_dir (before
    transformers 5), else TENSORBOARD_LOGGING_DIR, else <output_dir>/runs. Our runs go in beside it."""
    import os

    d = getattr(args, "logging_dir", None) or os.environ.get("TENSORBOARD_LOGGING_DIR")
    if d:
        return os.path.expanduser(d)
    out = getattr(args, "output_dir", None)
    return os.path.join(out, "runs") if out else None


class ActLabCallback(_trainer_callback_base()):
    """`Trainer(..., callbacks=[ActLabCallback(run="bert-run")])`: watches `trainer.model` and mirrors
    the Trainer's logs into the store (loss -> loss/train, learning_rate -> lr, eval_* -> eval/*)."""

    def __init__(self, run: str | None = None, log_every: int | None = None, sinks=None, **watch_kwargs):
        # sinks=None follows TrainingArguments.report_to (tensorboard into its logging_dir, mlflow, wandb).
        self.run, self.log_every, self.sinks, self.kwargs = run, log_every, sinks, watch_kwargs
        self.watcher: Watcher | None = None

    def on_train_begin(self, args, state, control, model=None, **kw):
        if self.watcher is not None or model is None:
            return
        cfg = {"trainer": {k: getattr(args, k, None) for k in ("learning_rate", "per_device_train_batch_size",
                                                                  "num_train_epochs", "max_steps", "seed",
                                                                  "gradient_accumulation_steps")}}
        sinks = self.sinks if self.sinks is not None else from_report_to(getattr(args, "report_to", None),
                                                                         _tensorboard_dir(args))
        self.watcher = watch(model, run=self.run, log_every=self.log_every or max(1, int(args.logging_steps or 50)),
                             config=cfg, kind="hf-trainer", sinks=sinks, **self.kwargs)

    def on_step_end(self, args, state, control, **kw):
        if self.watcher is not None:
            self.watcher.epoch = state.epoch
            self.watcher.step()

    @staticmethod
    def mirror(logs: dict) -> dict[str, float]:
        out = {}
        for k, v in (logs or {}).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or k == "epoch":
                continue
            if k == "loss":
                k = "loss/train"
            elif k == "learning_rate":
                k = "lr"
            elif k.startswith("eval_"):
                k = "eval/" + k[5:]
            elif k.startswith("train_"):
                k = "train/" + k[6:]
            out[k] = float(v)
        return out

    def on_log(self, args, state, control, logs=None, **kw):
        if self.watcher is not None:
            values = self.mirror(logs)
            if values:
                self.watcher.log(values, step=state.global_step, epoch=state.epoch)

    def on_train_end(self, args, state, control, **kw):
        if self.watcher is not None:
            self.watcher.close("finished")


__all__ = ["ActLabCallback"]
