"""Curve smoothing shared by the compare and training charts."""
from __future__ import annotations

import math

import numpy as np


def ema(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an EMA debiased at the start so the curve does not begin at zero."""
    x = np.asarray(values, float)
    if weight <= 0 or len(x) == 0:
        return x.copy()
    out = np.empty_like(x)
    last, num = 0.0, 0
    for i, v in enumerate(x):
        if not math.isfinite(v):
            out[i] = v
            continue
        num += 1
        last = last * weight + (1 - weight) * v
        out[i] = last / (1 - weight ** num)
    return out
