"""Alerts from a run's scalars: which layer is dying, which gradient vanished or exploded, whether
the loss went NaN -- each with likely causes read off the config and branch offers to try.

`diagnose` is pure: the tidy scalar frame (run, step, epoch, key, value, wall_time), the run's
config and layer table in, a sorted list of `Alert` out. It never raises on odd input (empty
frame, missing keys, NaN values, one row): a monitor page calls it on every refresh, also while
the first flush is still being written. The rules only look at the last few flushes, so an alert
goes away again once the layer recovers.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from ..activations import RELU_LIKE

# The explorer opens on the activation named by its `act` query parameter (dashboard/views/explorer.py).
EXPLORER_URL = "/explorer?act={act}"
# Adam's step size is ~lr per weight whatever the gradient's scale, so above ~3e-3 a few steps can
# move a whole layer's pre-activations past the kink; SGD's step scales with the gradient.
HIGH_LR = {"adam": 3e-3, "adamw": 3e-3, "sgd": 0.1}
_SATURATING = {"tanh", "sigmoid", "softsign"}
# The trainer's NonFiniteLoss text: "<what> became nan|inf|-inf at step N".
_NONFINITE = re.compile(r"(?:(?P<what>[\w./-]+)\s+)?became\s+(?P<value>-?inf|nan)\b", re.I)
_AT_STEP = re.compile(r"\bat step (\d+)")


@dataclass(frozen=True)
class Rules:
    dead_threshold: float = 0.3      # a layer's dead/dormant fraction above this ...
    rising_flushes: int = 3          # ... and not falling over the last K flushes, with a net rise
    min_rise: float = 0.02
    vanishing: float = 1e-7          # grad norm below this for the last K flushes
    exploding: float = 1e3           # grad norm above this, or ...
    jump: float = 100.0              # ... above `jump` x its median over earlier flushes


@dataclass
class Alert:
    kind: str            # "dying_layer" | "vanishing_grad" | "exploding_grad" | "nan_loss"
    severity: str        # "warning" | "error"
    layer: str | None    # the layer (or parameter, or loss key) it is about
    step: int | None     # the step it was seen at
    message: str         # one sentence with the figures
    causes: list[str] = field(default_factory=list)   # most likely first
    activation: str | None = None                     # registry name, for the explorer link
    explorer_url: str | None = None
    actions: list[dict] = field(default_factory=list)  # {"label", "kind", "overrides"}


def diagnose(scalars: pd.DataFrame, config: dict | None = None, layers: dict | None = None,
             status_reason: str | None = None, rules: Rules = Rules()) -> list[Alert]:
    config, layers = dict(config or {}), dict(layers or {})
    series = _series(scalars)
    alerts = _dying_layers(series, config, layers, rules)
    alerts += _gradients(series, config, rules)
    alerts += _nan_loss(series, config, status_reason)
    # Errors first, then by layer; kind and step break ties so a refresh never reorders the list.
    return sorted(alerts, key=lambda a: (a.severity != "error", a.layer or "", a.kind, a.step or 0))


def _series(df) -> dict[str, pd.DataFrame]:
    """key -> its (step, value) rows sorted by step, one row per step (the last written wins, as a
    resume's rewrite would). Anything unreadable gives an empty dict, never an exception."""
    if not isinstance(df, pd.DataFrame) or df.empty or not {"key", "step", "value"} <= set(df.columns):
        return {}
    d = pd.DataFrame({"key": df["key"].astype(str),
                      "step": pd.to_numeric(df["step"], errors="coerce"),
                      "value": pd.to_numeric(df["value"], errors="coerce")})  # None -> NaN
    d = d[d["step"].notna()]
    d = d.drop_duplicates(["key", "step"], keep="last").sort_values(["key", "step"], kind="stable")
    return {k: g[["step", "value"]].reset_index(drop=True) for k, g in d.groupby("key", sort=True)}


def _tail(s: pd.DataFrame, k: int) -> list[float] | None:
    """The last k values, or None when there are fewer or any is NaN: a gap says nothing about a trend."""
    if k < 1 or len(s) < k:
        return None
    vals = [float(v) for v in s["value"].iloc[-k:]]
    return vals if all(math.isfinite(v) for v in vals) else None


# ---------------------------------------------------------------- dying layers

def _dying_layers(series, config, layers, rules) -> list[Alert]:
    names = sorted({k.split("/", 1)[1] for k in series if k.startswith(("dead/", "dormant/"))} | set(layers))
    out = []
    for name in names:
        info = layers.get(name) or {}
        # One figure per layer, the one its definition names: for a GELU layer dead/ is ~0 by
        # construction and only dormant/ means something. Unknown layers: dead/ where logged.
        figure = info.get("definition") or ("dead" if f"dead/{name}" in series else "dormant")
        if f"{figure}/{name}" not in series:
            figure = "dormant" if figure == "dead" else "dead"
        s = series.get(f"{figure}/{name}")
        vals = _tail(s, rules.rising_flushes) if s is not None else None
        if vals is None or vals[-1] <= rules.dead_threshold or vals[-1] - vals[0] < rules.min_rise:
            continue
        if any(b < a - 1e-9 for a, b in itertools.pairwise(vals)):
            continue
        act = info.get("activation") or (None if info else config.get("activation"))
        # dead/ is only defined for ReLU-like layers, so an unnamed layer with a dead figure is one.
        relu = act in RELU_LIKE or (act is None and figure == "dead")
        step = int(s["step"].iloc[-1])
        actions = [{"label": "Branch with recycling (ReDo)", "kind": "recycle",
                    "overrides": {"recycle_every": int(config.get("log_every") or 100)}}]
        if relu:
            actions.append({"label": "Branch with LeakyReLU", "kind": "activation", "overrides": {"activation": "leaky_relu"}})
        actions += _half_lr(config)
        out.append(Alert(
            kind="dying_layer", severity="warning", layer=name, step=step,
            message=(f"{name}: {vals[-1]:.0%} of units {figure} and rising over the last {len(vals)} flushes "
                     f"({vals[0]:.0%} -> {vals[-1]:.0%})"),
            causes=_relu_causes(config) if relu else _smooth_causes(config, act),
            activation=act, explorer_url=EXPLORER_URL.format(act=act) if act else None, actions=actions))
    return out


def _num(config, key) -> float | None:
    try:
        v = float(config[key])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _lr_is_high(config) -> bool | None:
    lr = _num(config, "lr")
    if lr is None:
        return None
    return lr > HIGH_LR.get(str(config.get("optimizer", "adam")).lower(), HIGH_LR["adam"])


def _ranked(checks) -> list[str]:
    """checks: (implicated: True/False/None, specific text, generic text). What the config points
    to comes first, in the order given; then, unranked, the generic text of every cause the config
    does not settle (None). If the config rules everything out, the generic list is still the best
    guess there is."""
    specific = [s for hit, s, _ in checks if hit]
    generic = [g for hit, _, g in checks if hit is None]
    return specific + generic or [g for _, _, g in checks]


def _relu_causes(config) -> list[str]:
    bias, lr, norm = _num(config, "init_bias"), _num(config, "lr"), config.get("norm")
    return _ranked([
        (None if bias is None else bias < 0,
         f"negative bias init (init_bias={bias!r}) puts pre-activations left of the kink",
         "pre-activations drifting negative (a negative bias or large updates), left of the kink"),
        (_lr_is_high(config), f"learning rate {lr:g} is high for this init" if lr else "",
         "a learning rate too high: large steps push units past the kink and they get no gradient back"),
        (None if norm is None else str(norm).lower() in ("none", ""),
         "no normalisation before the activation (norm='none')", "no normalisation before the activation"),
    ])


def _smooth_causes(config, act) -> list[str]:
    bias, lr, norm = _num(config, "init_bias"), _num(config, "lr"), config.get("norm")
    name = act or "the activation"
    if act in _SATURATING:
        region = f"{name} saturation: large |pre-activations| pin outputs at the asymptotes, where the gradient vanishes"
    else:
        region = f"pre-activations drifting far negative, where {name}'s outputs and gradients are near zero"
    checks = [(None, "", region)] if act in _SATURATING else [
        (None if bias is None else bias < 0,
         f"negative bias init (init_bias={bias!r}) starts pre-activations in {name}'s small-output tail", region)]
    checks += [
        (_lr_is_high(config), f"learning rate {lr:g} is high: large steps push pre-activations out of the active range" if lr else "",
         "a learning rate too high for this init"),
        (None if norm is None else str(norm).lower() in ("none", ""),
         "no normalisation before the activation (norm='none')", "no normalisation before the activation"),
    ]
    causes = _ranked(checks)
    # The saturation story is the mechanism for tanh/sigmoid whatever the config says: lead with it.
    return ([region] + [c for c in causes if c != region]) if act in _SATURATING else causes


def _half_lr(config) -> list[dict]:
    lr = _num(config, "lr")
    return [] if lr is None else [{"label": "Branch with half the learning rate", "kind": "lr", "overrides": {"lr": lr / 2}}]


# ---------------------------------------------------------------- gradients

def _gradients(series, config, rules) -> list[Alert]:
    out = []
    for key in sorted(k for k in series if k.startswith("grad_norm/")):
        s, param = series[key], key.split("/", 1)[1]
        vals = _tail(s, rules.rising_flushes)
        # Vanishing first: a series of tiny norms can also "jump" 100x while staying tiny, and then
        # the vanishing story is the one that matters.
        if vals is not None and all(0 <= v < rules.vanishing for v in vals):
            zero = all(v == 0 for v in vals)
            out.append(Alert(
                kind="vanishing_grad", severity="warning", layer=param, step=int(s["step"].iloc[-1]),
                message=(f"{param}: gradient norm {'exactly 0' if zero else f'below {rules.vanishing:g}'} "
                         f"over the last {len(vals)} flushes (last {vals[-1]:.3g})"),
                causes=["every unit this parameter feeds is dead or saturated, so no gradient flows back",
                        "the parameter is frozen or not on the loss path" if zero else
                        "activations upstream saturated (tanh/sigmoid) or a very deep stack without normalisation"],
                actions=[{"label": "Branch with LeakyReLU", "kind": "activation", "overrides": {"activation": "leaky_relu"}}]
                if config.get("activation") in RELU_LIKE else []))
            continue
        finite = s[s["value"].notna() & (s["value"].abs() != math.inf)]
        # A lone flush says nothing yet (the first steps of a fresh init often have large norms);
        # a NaN last flush neither: the nan_loss rule or the next flush will say more.
        if len(finite) < 2 or finite.index[-1] != s.index[-1]:
            continue
        last, step = float(finite["value"].iloc[-1]), int(finite["step"].iloc[-1])
        earlier = finite["value"].iloc[:-1]
        median = float(earlier.median()) if len(earlier) >= 3 else None
        if last > rules.exploding:
            why = f"above {rules.exploding:g}"
        elif median is not None and median > 0 and last > rules.jump * median:
            why = f"{last / median:.0f}x its median {median:.3g} over the {len(earlier)} earlier flushes"
        else:
            continue
        lr = _num(config, "lr")
        out.append(Alert(
            kind="exploding_grad", severity="warning", layer=param, step=step,
            message=f"{param}: gradient norm {last:.3g} at step {step}, {why}",
            causes=[f"learning rate {lr:g} too high" if lr is not None else "a learning rate too high",
                    "a bad batch (outliers, wrong labels or scaling)",
                    "no gradient clipping or normalisation" + (" (norm='none')" if config.get("norm") == "none" else "")],
            actions=_half_lr(config)))
    return out


# ---------------------------------------------------------------- non-finite loss

def _nan_loss(series, config, status_reason) -> list[Alert]:
    """One alert at most: the status reason (the trainer's own words and step) when it says the
    loss became non-finite, else the first loss/* key whose latest flush is NaN."""
    layer = step = message = None
    m = _NONFINITE.search(status_reason) if isinstance(status_reason, str) else None
    if m:
        layer, message = m.group("what"), f"Training stopped: {status_reason.strip()}"
        at = _AT_STEP.search(status_reason)
        step = int(at.group(1)) if at else None
    for key in sorted(k for k in series if k.startswith("loss/")):
        s = series[key]
        if message is not None or not len(s) or not math.isnan(s["value"].iloc[-1]):
            continue
        finite = s.index[s["value"].notna()]
        first_bad = finite[-1] + 1 if len(finite) else 0  # where the trailing NaN stretch begins
        layer, step = key, int(s["step"].iloc[first_bad])
        n = len(s) - first_bad
        message = f"{key} is NaN/inf from step {step} on ({n} flush{'es' if n != 1 else ''})"
    if message is None:
        return []
    lr = _num(config, "lr")
    return [Alert(kind="nan_loss", severity="error", layer=layer, step=step, message=message,
                  causes=[f"learning rate {lr:g} too high" if lr is not None else "a learning rate too high",
                          "a bad batch (NaN/inf inputs, an empty or extreme batch)",
                          "fp16/bf16 overflow" + (" (bf16 is on)" if config.get("bf16") else "")],
                  actions=_half_lr(config))]
