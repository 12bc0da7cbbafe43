"""Checkpoints: plain dicts (model, optimizer, config, step, epoch), written atomically and read
with weights_only=True (a checkpoint is data, never code)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError


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
