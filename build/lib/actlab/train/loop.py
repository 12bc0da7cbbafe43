"""Pieces every trainer shares (MNIST, bi-encoder). The loops themselves stay in their own files.

pick_device, seed_everything, save_checkpoint / load_checkpoint (atomic, weights_only), GracefulStop
(SIGTERM/SIGINT -> a flag the loop checks), check_finite (the NaN/inf guard, run at log intervals on
a loss accumulated on the device), autocast / maybe_compile (CUDA only), progress (tqdm) and
add_common_args (the flags every `python -m core train <task>` has).
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .. import argtypes as T
from .. import paths


class NonFiniteLoss(UserError):
    """The loss became NaN or inf; the trainer marks the run failed and keeps the last good checkpoint."""


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> Path:
    """Write to a temp file in the same folder, then os.replace: a kill mid-write never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which one, don't dump a traceback
        raise UserError(f"cannot load checkpoint {path}: {e.__class__.__name__}: {str(e).splitlines()[0][:200]}") from None


class GracefulStop:
    """SIGTERM / SIGINT set `requested`; the loop checks it between steps, checkpoints and stops.
    A second signal restores the default handler's behaviour (hard stop)."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.requested = False
        self._old = {}
        try:
            for s in signals:
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread (e.g. in-process under Streamlit): no handlers
            self._old = {}

    def _handle(self, signum, frame):
        if self.requested:
            self.restore()
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()


def check_finite(value: float, step: int, what: str = "loss"):
    """Called with a value already fetched at a log interval (never per step)."""
    if not math.isfinite(value):
        raise NonFiniteLoss(f"{what} became {value} at step {step}")


def autocast(device: torch.device, bf16: bool):
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(model: torch.nn.Module, device: torch.device, enabled: bool):
    # torch.compile pays off on CUDA; on a 2-core CPU the compile time dwarfs a short run.
    if enabled and device.type == "cuda":
        return torch.compile(model)
    return model


def progress(total: int, initial: int = 0, desc: str = "", disable: bool | None = None):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, disable=disable, mininterval=0.5)


def add_common_args(p, defaults: dict):
    """--epochs --lr --batch-size --runs-dir --name --seed --device --log-every --resume (+ --max-steps)."""
    p.add_argument("--epochs", type=T.positive_int, default=defaults.get("epochs", 1))
    p.add_argument("--lr", type=T.positive_float, default=defaults.get("lr", 1e-3))
    p.add_argument("--batch-size", type=T.positive_int, default=defaults.get("batch_size", 64))
    p.add_argument("--runs-dir", default=str(defaults.get("runs_dir") or paths.runs_dir()))
    p.add_argument("--name", type=T.run_name, default=None, help="run name (default: task-time)")
    p.add_argument("--seed", type=T.non_negative_int, default=defaults.get("seed", 0))
    p.add_argument("--device", default=defaults.get("device", "auto"), help="auto | cpu | cuda[:N]")
    p.add_argument("--log-every", type=T.positive_int, default=defaults.get("log_every", 50))
    p.add_argument("--max-steps", type=T.positive_int, default=None, help="stop after this many optimizer steps in total")
    p.add_argument("--resume", type=T.existing_run_name, default=None, metavar="RUN", help="continue RUN from its last checkpoint")
    return p
