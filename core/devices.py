"""Which torch device a run uses: `auto` (CUDA when there is one), `cpu` or `cuda[:N]`."""
from __future__ import annotations

import torch

from .errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return torch.device(name)
