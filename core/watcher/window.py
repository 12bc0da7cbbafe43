"""A flush of the probes: the interval's device sums packed into one tensor, then the window's
figures computed on the host (core/watcher/probes.py says what they mean).

    flat, layout = pack(layers, bins, zeros)    # one flat fp32 tensor: one DDP all-reduce, one fetch
    out = score(layers, layout, host, bins, tau)  # merge into the window, per-layer figures

The window's sums and masks live on the host (float64 numpy): after the one fetch a flush has, a
few small array operations cost microseconds, where on the device each was a kernel launch (on the
CPU, a dispatch of several microseconds).
"""
from __future__ import annotations

import numpy as np
import torch


def pack(layers: dict, bins: int, zeros) -> tuple[torch.Tensor | None, list[str]]:
    """Per layer [d_sum, alive, hist, active, zero, d_count, s_count], then per layer the counts kept
    on the host [d_count, s_count, sampled]. `zeros(k, device)`: a cached zero tensor."""
    parts, host, layout = [], [], []
    for name, L in layers.items():
        if L.units is None or L.d_sum is None:
            continue
        u, dev = L.units, L.d_sum.device
        parts += [L.d_sum.reshape(-1),
                  L.d_alive.reshape(-1) if L.d_alive is not None else zeros(u, dev),
                  L.hist if L.hist is not None else zeros(bins, dev),
                  L.active.reshape(-1) if L.active is not None else zeros(u, dev),
                  L.zero.reshape(1) if L.zero is not None else zeros(1, dev),
                  L.d_count.reshape(1) if L.d_count is not None else zeros(1, dev),
                  L.s_count.reshape(1) if L.s_count is not None else zeros(1, dev)]
        host += [L.d_count_host, L.s_count_host, float(L.sampled)]
        layout.append(name)
    if not parts:
        return None, []
    dev = parts[0].device
    parts.append(torch.tensor(host, dtype=torch.float32, device=dev))
    return torch.cat([p.to(device=dev, dtype=torch.float32) for p in parts]), layout


def score(layers: dict, layout: list[str], v: np.ndarray, bins: int, tau: float) -> dict:
    """Merge the fetched interval `v` (what `pack` made, all-reduced) into each layer's window and
    return its figures."""
    out = {}
    counts = v[len(v) - 3 * len(layout):].reshape(-1, 3).tolist()
    i = 0
    # Plain slices and Python floats: a flush of a small model is a few dozen numpy calls, and
    # each costs microseconds (np.split and .mean() several).
    for name, (d_host, s_host, sampled) in zip(layout, counts):
        L = layers[name]
        u = L.units
        d_sum, d_alive, hist = v[i:i + u], v[i + u:i + 2 * u] > 0, v[i + 2 * u:i + 2 * u + bins]
        active = v[i + 2 * u + bins:i + 3 * u + bins]
        zero, d_count, s_count = v[i + 3 * u + bins:i + 3 * u + bins + 3].tolist()
        i += 3 * u + bins + 3
        d_count, s_count = d_count + d_host, s_count + s_host
        if L.rule in ("sum", None):  # probes._record_sample: zeros are the samples not counted active
            zero = s_count * u - float(active.sum())
        L.w_sum = d_sum.copy() if L.w_sum is None else L.w_sum + d_sum
        L.w_count = d_count if L.w_count is None else L.w_count + d_count
        if L.rule is not None:
            alive = (L.w_sum > 0) if L.rule == "sum" else d_alive
            L.w_alive = alive if L.w_alive is None else (L.w_alive | alive)
        mean = L.w_sum / max(L.w_count, 1.0)
        layer_mean = float(mean.sum()) / u
        # A layer whose every output is 0 has every unit dormant (score 0), not NaN.
        s = mean / layer_mean if layer_mean > 0 else np.zeros_like(mean)
        d = {"dormant": np.count_nonzero(s <= tau) / u, "score": s, "hist": hist.copy(),
             "activity": active / max(s_count, 1.0),
             "zero_frac": zero / max(s_count * u, 1.0) if sampled > 0 else float("nan"),
             "sampled_batches": int(sampled), "sampled_samples": float(s_count), "window_samples": float(L.w_count)}
        if L.rule is not None:
            d["alive"] = L.w_alive.copy()
            d["dead"] = 1.0 - np.count_nonzero(d["alive"]) / u
            if L.prev_dead is not None:  # there was a previous window
                d["revived"] = int(np.count_nonzero(L.prev_dead & L.w_alive))
        out[name] = d
    return out
