"""Pieces every trainer shares (MNIST, bi-encoder). The loops themselves stay in their own files.

seed_everything, GracefulStop
(SIGTERM/SIGINT -> a flag the loop checks), check_finite (the NaN/inf guard, run at log intervals on
a loss accumulated on the device), autocast / maybe_compile (CUDA only) and progress (tqdm). The
flags every `actlab train <task>` has are declared in config.py. pick_device (core/devices.py) and
save_checkpoint / load_checkpoint (core/checkpoints.py: atomic, weights_only) live below every
layer that uses them and are importable from here too.
"""
from __future__ import annotations

import contextlib
import math
import random
import signal

import numpy as np
import torch

from ..checkpoints import load_checkpoint, save_checkpoint  # noqa: F401 (trainers import them from here)
from ..devices import pick_device  # noqa: F401 (likewise)
from ..errors import UserError


class NonFiniteLoss(UserError):
    """The loss became NaN or inf; the trainer marks the run failed and keeps the last good checkpoint."""


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


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
