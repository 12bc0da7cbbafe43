"""A training run's life, the same for every trainer: where its config and weights come from
(create, resume, branch) and how it ends (finished, stopped, failed).

One precedence, lowest first:
    the task's defaults < the checkpoint's saved config (resume / branch) < a preset < what the caller set now
(a flag left out is not set; a dict key is, even to None, unless None would replace a real default).
The folders (runs, checkpoints) are always the ones given now, else actlab.paths: a resumed run is
found where it is, not where it once was.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import UserError
from ..store.runs import check_lookup_name
from .config import TaskSpec
from .loop import GracefulStop, NonFiniteLoss, load_checkpoint

STOP_REASON = "stop requested (SIGTERM/SIGINT); checkpoint saved"
_NOT_INHERITED = ("name", "resume", "branch_from", "preset")


@dataclass
class Start:
    cfg: dict  # the run's whole config (validated)
    ckpt: dict | None  # the checkpoint it starts from (resume or branch), or None
    branch_of: dict | None  # {"run", "step"} for a branch


def start(spec: TaskSpec, config: dict) -> Start:
    """Resolve a trainer's config: create, resume (`resume`: continue that run under its name) or
    branch (`branch_from`: a new run from another run's latest checkpoint)."""
    spec.check_keys(config)
    defaults = spec.defaults()
    # A key passed is set, None included (max_steps=None: no limit, even if the checkpoint had one),
    # except that None never replaces a real default: it means "the default" there.
    given = {k: v for k, v in config.items() if v is not None or defaults[k] is None}
    where = {"runs_dir": str(given.get("runs_dir") or paths.runs_dir()),
             "checkpoints_dir": str(given.get("checkpoints_dir") or paths.checkpoints_dir())}
    if given.get("resume") and given.get("branch_from"):  # before either one reads a checkpoint
        raise UserError("--resume and --branch-from: pick one (resume continues a run, a branch starts a new one)")
    resume, branch = given.get("resume"), given.get("branch_from")
    ckpt, saved, branch_of = None, {}, None
    if resume or branch:
        src = check_lookup_name(resume or branch)
        ckpt = load_checkpoint(Path(where["checkpoints_dir"]) / src / "last.pt")
        saved = {k: v for k, v in (ckpt.get("config") or {}).items() if k in spec.by_key and k not in _NOT_INHERITED}
        if resume and spec.resume_may_change is not None:
            given = {k: v for k, v in given.items() if k in spec.resume_may_change}
    preset = spec.presets.get(given.get("preset") or "", {})
    cfg = {**defaults, **saved, **preset, **given, **where}
    cfg.pop("preset", None)
    if resume:
        cfg["resume"] = cfg["name"] = src  # a resumed run keeps the name it has (maybe an older, looser one)
        spec.validate({k: v for k, v in cfg.items() if k != "name"})
    else:
        spec.validate(cfg)
        if branch:
            cfg["name"] = cfg["name"] or f"{src}-branch-{time.strftime('%H%M%S')}"
            branch_of = {"run": src, "step": int(ckpt["step"])}
    return Start(cfg, ckpt, branch_of)


@dataclass
class Ending:
    stop: GracefulStop  # the loop polls stop.requested between steps
    state: str = "running"
    reason: str | None = None


@contextlib.contextmanager
def lifecycle(w, *, raise_nonfinite: bool = False):
    """How a run ends, for every trainer: finished; stopped on SIGTERM/SIGINT (the loop saw
    `stop.requested`, checkpointed and left) or a second signal; failed on a non-finite loss (the
    last good checkpoint stays: one is only saved after the loss was checked) or any error, with
    the reason in the run's status. A non-finite loss is re-raised when `raise_nonfinite`."""
    end = Ending(GracefulStop())
    try:
        yield end
        end.state, end.reason = ("stopped", STOP_REASON) if end.stop.requested else ("finished", None)
    except NonFiniteLoss as e:
        end.state, end.reason = "failed", str(e)
        _close(w, end)
        if raise_nonfinite:
            raise
        return
    except KeyboardInterrupt:
        end.state, end.reason = "stopped", "interrupted (a second SIGINT/SIGTERM)"
        _close(w, end)
        raise
    except BaseException as e:
        end.state, end.reason = "failed", f"{type(e).__name__}: {e}"[:500]
        _close(w, end)
        raise
    finally:
        end.stop.restore()
    _close(w, end)


def _close(w, end: Ending) -> None:
    if not getattr(w, "closed", False):
        w.close(end.state, end.reason)
