"""Recycling dormant units in place (ReDo: Sokar et al., "The Dormant Neuron Phenomenon in Deep
Reinforcement Learning", ICML 2023).

For an activation layer and a mask of its units:
- the incoming weights (rows of the Linear, output channels of the Conv that feeds the activation)
  are redrawn with that layer's own initialisation, and their biases set to 0;
- the outgoing weights (columns of the next Linear/Conv) are set to 0, so the network's function
  does not jump at the recycle;
- the optimizer state of exactly those entries (Adam's exp_avg / exp_avg_sq, SGD's momentum) is
  zeroed. Without this, Adam's stale second moments shrink the revived units' first updates and the
  old first moments push them straight back where they died.

The pair (incoming, outgoing) is found from the Hugging Face FFN layout (`intermediate.dense` ->
`intermediate_act_fn` -> `output.dense`) or by module order (nn.Sequential, plain MLP/CNN blocks),
skipping per-unit modules in between (BatchNorm, Dropout, Identity). Anything else in between
(a LayerNorm mixes units; attention; a second activation) makes the layer "cannot recycle", with
the reason; `watch(model, recycle_pairs={"act1": ("fc1", "fc2")})` names a pair by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WEIGHTED = (nn.Linear,) + _CONV
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Elementwise or per-unit: recycling some units leaves the others' outputs exactly as they were.
_PER_UNIT = _BATCHNORM + (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)
# After the activation, channel-wise ops keep each unit's outputs its own: a unit at 0 pools to 0, and
# a flatten lays each channel out as one contiguous block of the next Linear's inputs.
_CHANNELWISE = _PER_UNIT + (nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                            nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                            nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


@dataclass
class RecyclePair:
    incoming: nn.Module
    outgoing: nn.Module
    incoming_name: str
    outgoing_name: str
    norms: tuple = ()  # BatchNorms between incoming and the activation: their per-unit state is reset too
    block: int = 1  # outgoing columns per unit (a channel-major flatten between a Conv and a Linear)

    def describe(self) -> str:
        return f"{self.incoming_name} -> {self.outgoing_name}"


def _out_units(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _in_units(m: nn.Module) -> int:
    return m.in_features if isinstance(m, nn.Linear) else m.in_channels


def _check(inc: nn.Module, out: nn.Module, units: int | None, names: tuple[str, str]) -> tuple[int, str | None]:
    """(columns of `out` per unit, or a reason the pair does not fit)."""
    n_in = _out_units(inc)
    if units is not None and n_in != units:
        return 1, f"{names[0]} has {n_in} outputs but the layer has {units} units"
    if isinstance(out, _CONV) and out.groups != 1:
        return 1, f"{names[1]} is a grouped conv (groups={out.groups})"
    if isinstance(inc, _CONV) and inc.groups != 1:
        return 1, f"{names[0]} is a grouped conv (groups={inc.groups})"
    k = _in_units(out)
    if k == n_in:
        return 1, None
    if isinstance(inc, _CONV) and isinstance(out, nn.Linear) and k % n_in == 0:
        return k // n_in, None  # Conv -> flatten -> Linear: each channel owns a contiguous block of inputs
    return 1, f"{names[1]} takes {k} inputs, not the {n_in} units of {names[0]}"


def _hf_pair(model: nn.Module, act_name: str) -> tuple[str, str] | None:
    """BERT-family FFN: <layer>.intermediate.intermediate_act_fn feeds <layer>.output.dense."""
    parts = act_name.split(".")
    if len(parts) < 3 or parts[-1] != "intermediate_act_fn":
        return None
    layer = ".".join(parts[:-2])
    inc, out = f"{layer}.{parts[-2]}.dense", f"{layer}.output.dense"
    try:
        model.get_submodule(inc), model.get_submodule(out)
    except AttributeError:
        return None
    return inc, out


def _by_order(model: nn.Module, path: str, role: str) -> tuple[str | None, str | None, tuple, str | None]:
    """(incoming, outgoing, batchnorms between, reason) by module registration order."""
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    idx = next((i for i, (n, _) in enumerate(leaves) if n == path), None)
    if idx is None:
        return None, None, (), f"{path} is not a leaf module of the model"
    norms, inc = [], None
    if role == "pre":  # the hooked Linear/Conv itself feeds F.<act> in forward
        inc = path
    else:
        for n, m in reversed(leaves[:idx]):
            if isinstance(m, _WEIGHTED):
                inc = n
                break
            if isinstance(m, _BATCHNORM):
                norms.append(m)
            elif not isinstance(m, _PER_UNIT):
                return None, None, (), f"{type(m).__name__} {n} sits between the activation and the layer feeding it"
        if inc is None:
            return None, None, (), "no Linear/Conv before the activation"
    out = None
    for n, m in leaves[idx + 1:]:
        if isinstance(m, _WEIGHTED):
            out = n
            break
        if not isinstance(m, _CHANNELWISE):
            return inc, None, (), f"{type(m).__name__} {n} sits between the activation and the next Linear/Conv"
    if out is None:
        return inc, None, (), "no Linear/Conv after the activation (it is the model's last layer)"
    return inc, out, tuple(norms), None


def find_pairs(model: nn.Module, targets: list, given: dict | None = None) -> dict[str, RecyclePair | str]:
    """{layer: RecyclePair, or the reason it cannot be recycled}. `targets` are core.probes.Target;
    `given` = {layer: (incoming name, outgoing name)} overrides the search."""
    paths = {id(m): n for n, m in model.named_modules()}
    out: dict[str, RecyclePair | str] = {}
    for t in targets:
        path = paths.get(id(t.module))
        if path is None:
            out[t.name] = "module not found in the model"
            continue
        norms: tuple = ()
        if given and t.name in given:
            inc, outg = given[t.name]
            reason = None
        elif (hf := _hf_pair(model, path)) is not None:
            (inc, outg), reason = hf, None
        else:
            inc, outg, norms, reason = _by_order(model, path, t.role)
        if reason is None:
            try:
                mi, mo = model.get_submodule(inc), model.get_submodule(outg)
            except AttributeError as e:
                out[t.name] = f"recycle_pairs: {e}"
                continue
            if not (isinstance(mi, _WEIGHTED) and isinstance(mo, _WEIGHTED)):
                reason = f"{inc} and {outg} must both be Linear or Conv layers"
            else:
                block, reason = _check(mi, mo, None, (inc, outg))
        if reason is not None:
            out[t.name] = reason
        else:
            out[t.name] = RecyclePair(mi, mo, inc, outg, norms, block)
    return out


def _init_std(model: nn.Module) -> float | None:
    """Hugging Face models draw Linear weights from N(0, initializer_range)."""
    cfg = getattr(model, "config", None)
    std = getattr(cfg, "initializer_range", None)
    return float(std) if isinstance(std, (int, float)) else None


def _redraw(module: nn.Module, k: int, generator: torch.Generator | None, hf_std: float | None) -> torch.Tensor:
    """k fresh rows for `module.weight`, drawn as the layer itself was initialised."""
    w = module.weight
    shape = (k,) + tuple(w.shape[1:])  # the same fan-in as the whole weight
    new = torch.empty(shape, device="cpu", dtype=torch.float32)
    tag = getattr(module, "actlab_init", None)  # set by core.models for its own inits
    if hf_std is not None:
        new.normal_(0.0, hf_std, generator=generator)
    elif tag is not None and tag[0] == "he":
        fan_in = math.prod(shape[1:])
        gain = nn.init.calculate_gain("leaky_relu" if tag[1] in ("leaky_relu", "prelu") else "relu")
        new.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)
    elif tag is not None and tag[0] == "xavier":
        fan_in, fan_out = math.prod(shape[1:]), w.shape[0] * math.prod(shape[2:])
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        new.uniform_(-bound, bound, generator=generator)
    else:
        # torch's own default for Linear/Conv: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))
        new.uniform_(-bound, bound, generator=generator)
    return new.to(device=w.device, dtype=w.dtype)


def _reset_state(optimizer, param: torch.Tensor, index) -> int:
    """Zero every per-entry state tensor of `param` (exp_avg, exp_avg_sq, max_exp_avg_sq, momentum)."""
    if optimizer is None:
        return 0
    state = optimizer.state.get(param)
    if not state:
        return 0
    n = 0
    for v in state.values():
        if isinstance(v, torch.Tensor) and v.shape == param.shape:
            v[index] = 0
            n += 1
    return n


def _reset_step(optimizer, params) -> int:
    """Continual backprop's convention also restarts the optimizer's step count. torch's Adam keeps one
    step per parameter tensor (Dohare et al.'s AdamGnT keeps one per entry), so here it restarts for
    the whole weight and bias tensors the recycled units live in."""
    n = 0
    for p in params:
        st = optimizer.state.get(p) if optimizer is not None and p is not None else None
        if st and "step" in st:
            st["step"] = torch.zeros_like(st["step"]) if isinstance(st["step"], torch.Tensor) else 0
            n += 1
    return n


def _move_mean_into_bias(pair: RecyclePair, idx: torch.Tensor, mean_act) -> bool:
    """b_out += W_out[:, i] * mean(h_i) for each removed unit i, so the next layer's output keeps the
    removed units' mean contribution (continual backprop, Dohare et al. 2024)."""
    out = pair.outgoing
    if mean_act is None or out.bias is None:
        return False
    m = torch.as_tensor(mean_act, dtype=out.weight.dtype, device=out.weight.device).reshape(-1)[idx.to(out.weight.device)]
    w = out.weight
    if isinstance(out, nn.Linear):
        cols = w[:, :].reshape(w.shape[0], -1, pair.block)[:, idx.to(w.device)].sum(2)  # (out, k)
    else:
        cols = w[:, idx.to(w.device)].flatten(2).sum(2)  # a constant input to a conv: the kernel's sum
    out.bias += cols @ m
    return True


@torch.no_grad()
def recycle_units(pair: RecyclePair, mask: torch.Tensor, optimizer=None, model: nn.Module | None = None,
                  generator: torch.Generator | None = None, convention: str = "redo", mean_act=None) -> dict:
    """Recycle the units where `mask` is True. Returns what changed (for the event row).
    convention "redo" (default, Sokar et al.): zero the entries' optimizer moments, keep the step count.
    "cbp" (continual backprop): also restart the step count, and move the removed units' mean
    activation `mean_act` (per unit) times their outgoing weights into the next layer's bias."""
    if convention not in ("redo", "cbp"):
        raise ValueError(f"unknown optimizer-state convention {convention!r}; expected redo or cbp")
    mask = torch.as_tensor(mask, dtype=torch.bool).reshape(-1)
    if mask.numel() != _out_units(pair.incoming):
        raise ValueError(f"mask has {mask.numel()} units, {pair.incoming_name} has {_out_units(pair.incoming)} outputs")
    idx = mask.nonzero().reshape(-1)
    k = int(idx.numel())
    if k == 0:
        return {"units": 0, "optimizer_entries_reset": 0}
    inc, out = pair.incoming, pair.outgoing
    dev = inc.weight.device
    idx = idx.to(dev)
    inc.weight[idx] = _redraw(inc, k, generator, _init_std(model) if model is not None else None)
    reset = _reset_state(optimizer, inc.weight, idx)
    if inc.bias is not None:
        inc.bias[idx] = 0
        reset += _reset_state(optimizer, inc.bias, idx)
    for bn in pair.norms:
        if bn.affine:
            bn.weight[idx], bn.bias[idx] = 1.0, 0.0
            reset += _reset_state(optimizer, bn.weight, idx) + _reset_state(optimizer, bn.bias, idx)
        if bn.track_running_stats and bn.running_mean is not None:
            bn.running_mean[idx], bn.running_var[idx] = 0.0, 1.0
    moved = _move_mean_into_bias(pair, idx, mean_act) if convention == "cbp" else False
    cols = idx if pair.block == 1 else (idx[:, None] * pair.block + torch.arange(pair.block, device=dev)).reshape(-1)
    out.weight[:, cols.to(out.weight.device)] = 0
    reset += _reset_state(optimizer, out.weight, (slice(None), cols.to(out.weight.device)))
    steps = _reset_step(optimizer, (inc.weight, inc.bias, out.weight)) if convention == "cbp" else 0
    return {"units": k, "optimizer_entries_reset": reset, "optimizer": type(optimizer).__name__ if optimizer else None,
            "convention": convention, "step_counts_reset": steps, "mean_moved_to_bias": moved}


def recycle_mask(stats, mode: str, tau: float) -> torch.Tensor | None:
    """Which units to recycle from one layer's flushed statistics (a records.LayerStats):
    mode "dead": never alive in the window; mode "tau": tau-score <= tau (a dead unit scores 0)."""
    if mode == "dead":
        return None if stats.alive is None else torch.as_tensor(~stats.alive)
    return torch.as_tensor(stats.score <= tau)
