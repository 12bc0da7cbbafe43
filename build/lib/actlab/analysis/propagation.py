"""How a signal travels through an activation: deep random stacks and the softmax family.

`signal_propagation` pushes a Gaussian batch through L random Linear+activation layers and reports
each layer's forward activation std and backward gradient norm, so vanishing or exploding signals
show up as a slope on a log axis. The softmax helpers back the explorer's vector view.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..activations import create_act_layer, get_spec

INITS = ("default", "he", "xavier")


def _init_(linear: nn.Linear, init: str) -> None:
    if init == "he":
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
    elif init == "xavier":
        nn.init.xavier_normal_(linear.weight)
    # "default" keeps PyTorch's own kaiming_uniform(a=sqrt(5)), which is what an untuned model gets.
    if init != "default":
        nn.init.zeros_(linear.bias)


def signal_propagation(name: str, depth: int = 20, width: int = 256, batch: int = 256, init: str = "default",
                       seed: int = 0, **params) -> dict[str, list[float]]:
    """Per layer (1..depth): std of the activation output on the way forward, and the norm of the
    loss gradient w.r.t. that layer's weight on the way back (loss = sum of the last outputs)."""
    if get_spec(name).vector:
        raise UserError(f"{name} is vector-valued; signal propagation needs a scalar activation")
    if init not in INITS:
        raise UserError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    if not (1 <= depth <= 200 and 1 <= width <= 4096 and 2 <= batch <= 8192):
        raise UserError("depth must be in [1, 200], width in [1, 4096], batch in [2, 8192]")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the Linear layers draw from the global generator
    layers = []
    for _ in range(depth):
        lin = nn.Linear(width, width)
        _init_(lin, init)
        layers += [lin, create_act_layer(name, **params)]
    net = nn.Sequential(*layers).double()
    x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    forward_std = []
    h = x
    for i in range(0, len(layers), 2):
        h = net[i + 1](net[i](h))
        forward_std.append(float(h.detach().std()))
    # Per-sample loss so the gradient scale does not grow with the batch size.
    (h.sum() / batch).backward()
    grad_norm = [float(net[i].weight.grad.norm()) for i in range(0, len(layers), 2)]
    return {"layer": list(range(1, depth + 1)), "forward_std": forward_std, "grad_norm": grad_norm}


def parse_logits(text: str) -> list[float]:
    """A comma-separated logit vector typed by a user."""
    parts = [p.strip() for p in text.replace(";", ",").split(",")]
    if not text.strip() or any(p == "" for p in parts):
        raise UserError("logits must be comma-separated numbers, like 2, 1, 0.5")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise UserError(f"logit {bad!r} is not a number") from None
    if len(values) < 2:
        raise UserError("need at least two logits")
    if len(values) > 50:
        raise UserError("at most 50 logits")
    if not all(math.isfinite(v) for v in values):
        raise UserError("logits must be finite")
    return values


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def softmax_probs(logits: list[float], tau: float = 1.0) -> list[float]:
    if tau <= 0:
        raise UserError("temperature tau must be > 0")
    return torch.softmax(torch.tensor(logits, dtype=torch.float64) / tau, dim=-1).tolist()


def gumbel_samples(logits: list[float], tau: float, n: int, hard: bool = False, seed: int = 0) -> torch.Tensor:
    """n Gumbel-Softmax draws, shape (n, K). Seeded so a page re-run shows the same picture."""
    if tau <= 0:
        raise UserError("temperature tau must be > 0")
    if not 1 <= n <= 100_000:
        raise UserError("number of samples must be in [1, 100000]")
    gen = torch.Generator().manual_seed(seed)
    z = torch.tensor(logits, dtype=torch.float64).expand(n, -1)
    # Gumbel(0, 1) = -log(-log U); drawn here rather than by F.gumbel_softmax so it is reproducible.
    u = torch.rand(z.shape, generator=gen, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    y = torch.softmax((z - torch.log(-torch.log(u))) / tau, dim=-1)
    if hard:
        # Straight-through: one-hot forward values; the soft y would carry the gradient in training.
        one_hot = F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)
        y = one_hot - y.detach() + y
    return y


def gumbel_summary(logits: list[float], tau: float, n: int, hard: bool = False, seed: int = 0) -> dict:
    """The sample mean against the true softmax(logits) (tau = 1: what the samples are drawn from),
    the L1 distance between them, and the mean entropy of one sample."""
    y = gumbel_samples(logits, tau, n, hard, seed)
    true = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=-1)
    mean = y.mean(0)
    entropy = -(y.clamp_min(1e-300) * y.clamp_min(1e-300).log()).sum(-1).mean()
    return {"true": true.tolist(), "sample_mean": mean.tolist(), "l1_distance": float((mean - true).abs().sum()),
            "sample_entropy": float(entropy)}


def tau_sweep(logits: list[float], taus: list[float], n: int = 2000, hard: bool = False, seed: int = 0) -> dict:
    """As tau -> 0 the samples become one-hot (entropy -> 0) and their mean approaches the true
    probabilities; at large tau they blur towards uniform."""
    rows = [gumbel_summary(logits, t, n, hard, seed) for t in taus]
    return {"tau": list(taus), "l1_distance": [r["l1_distance"] for r in rows],
            "sample_entropy": [r["sample_entropy"] for r in rows]}
