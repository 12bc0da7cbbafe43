"""The padding mask of the current forward, handed to the probes so padded tokens count for nothing.

It is taken from the outermost running module whose forward takes `attention_mask` (inner ones,
like BERT's attention, get the 4-D additive form, which is not a padding mask).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn


def mask_owners(model: nn.Module) -> list[nn.Module]:
    owners = []
    for m in model.modules():
        try:
            if "attention_mask" in inspect.signature(m.forward).parameters:
                owners.append(m)
        except (TypeError, ValueError):
            continue
    return owners


class PaddingMask:
    """Forward pre/post hooks on every module that takes `attention_mask`; sets `probes.mask`."""

    def __init__(self, model: nn.Module, probes):
        self.probes = probes
        self.modules = mask_owners(model)
        self.depth = 0
        self.handles: list = []

    def attach(self):
        for m in self.modules:
            self.handles.append(m.register_forward_pre_hook(self._pre_hook(m), with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post_hook, always_call=True))

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    def _pre_hook(self, module):
        try:
            sig = inspect.signature(module.forward)
        except (TypeError, ValueError):
            sig = None

        def hook(mod, args, kwargs):
            self.depth += 1
            if self.depth > 1:
                return
            mask = kwargs.get("attention_mask")
            if mask is None and sig is not None and args:
                try:
                    mask = sig.bind_partial(*args, **kwargs).arguments.get("attention_mask")
                except TypeError:
                    mask = None
            self.probes.mask = mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        return hook

    def _post_hook(self, module, inputs, output):
        self.depth = max(0, self.depth - 1)
        if self.depth == 0:
            self.probes.mask = None


__all__ = ["PaddingMask", "mask_owners"]
