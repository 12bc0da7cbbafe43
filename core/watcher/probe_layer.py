"""One hooked layer: what `watch` found (`Target`), and the probes' per-layer state (`_Layer`): the
rule that decides "alive on some sample", the interval's device sums and the window's host sums.
core/watcher/probes.py fills them; core/watcher/window.py merges and scores them at a flush.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..activations import create_act_layer

# Piecewise-linear activations: "f' != 0" is an elementwise comparison (exact for eps = 0).
_FLAT_RULES = {
    "relu6": lambda x: (x > 0) & (x < 6),
    "hardswish": lambda x: x > -3,  # f' = 0 only left of -3 (and at the isolated point -1.5)
    "hardsigmoid": lambda x: (x > -3) & (x < 3),
}


@dataclass
class Target:
    """One hooked layer. role "act": the module IS the activation (input = pre-activation, output =
    activation output); role "pre": the module's output is the pre-activation of `activation`
    (applied later, e.g. by F.relu in the model's forward)."""
    name: str
    module: nn.Module
    activation: str | None  # registry name (for the page's f' overlay); None: no registry curve
    params: dict = field(default_factory=dict)
    dead: bool = True  # dead/ is defined (the class is known exactly); else zero_frac and dormant only
    role: str = "act"
    cls: str = ""
    reason: str = ""

    @property
    def definition(self) -> str:
        """Which figure the page leads with for this layer."""
        from ..activations import RELU_LIKE

        return "dead" if self.dead and self.activation in RELU_LIKE else "dormant"


class _Layer:
    def __init__(self, t: Target, eps: float):
        self.t = t
        if t.role == "pre":
            self.fn = create_act_layer(t.activation, **t.params).forward
        else:
            self.fn = t.module.forward
        act, p = t.activation, t.params
        # How "alive on some sample" is decided; None: no dead/ for this layer.
        if not t.dead:
            self.rule = None
        elif act == "relu" and eps < 1:
            self.rule = "sum"  # alive <=> sum of relu outputs > 0
        elif act in _FLAT_RULES and eps == 0:
            self.rule = "flat"
        elif act == "leaky_relu" and p.get("alpha", 0) > eps:
            self.rule = "always"
        elif t.cls == "Hardtanh" and eps == 0:
            lo, hi = float(t.module.min_val), float(t.module.max_val)
            self.rule, self.flat = "flat", lambda x: (x > lo) & (x < hi)
        else:
            self.rule = "autograd"
        if self.rule == "flat" and act in _FLAT_RULES:
            self.flat = _FLAT_RULES[act]
        # Whether every training forward counts: dead/ of a ReLU-like layer needs every sample (a
        # unit alive on one sample in a thousand is not dead); every other figure is measured on
        # the sampled batches.
        self.every = self.rule in ("sum", "flat")
        self.units = None
        self.fast = None  # set by the probes' hook: see ActivationProbes._fast_path
        self.reset_interval()
        self.reset_window()
        self.prev_dead = None

    def reset_interval(self):
        # Since the last flush, local to this process (all-reduced at the flush).
        self.d_sum = self.d_count = self.d_alive = None
        self.hist = self.active = self.zero = self.s_count = None
        self.staged = []  # histogram subsamples not binned yet (Histogram.take): binned at the flush
        # Sample counts without a padding mask are known on the host: no tensor per step for them.
        self.d_count_host = self.s_count_host = 0.0
        self.calls = self.sampled = 0

    def reset_window(self):
        # Since the window began, already merged across ranks.
        self.w_sum = self.w_count = self.w_alive = None


def _unit_dims(x: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    """(unit axis, the dims reduced over): the unit-axis rule in core/watcher/probes.py's docstring."""
    if x.dim() >= 4:
        return 1, (0,) + tuple(range(2, x.dim()))
    return x.dim() - 1, tuple(range(x.dim() - 1))
