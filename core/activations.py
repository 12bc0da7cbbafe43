"""The one activation registry: name -> module factory, parameters, properties.

Explorer, models and probes all go through `create_act_layer`, in the spirit of timm's
`create_act_layer`: configs carry strings, and nothing else imports a particular activation.
Curves and derivatives come from autograd on the very module a model would use, so what the
explorer draws is what training sees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError


class ActivationError(UserError):
    """Unknown activation name or a bad parameter; the CLI prints it as one line."""


@dataclass(frozen=True)
class Param:
    default: float
    low: float
    high: float
    step: float = 0.01
    help: str = ""


@dataclass(frozen=True)
class ActivationSpec:
    name: str
    factory: Callable[..., nn.Module]
    params: dict[str, Param] = field(default_factory=dict)
    description: str = ""
    vector: bool = False  # softmax-like: maps a vector to a vector, shown in its own view


class Swish(nn.Module):
    """x * sigmoid(beta * x); beta = 1 is SiLU, beta -> inf approaches ReLU."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self):
        return f"beta={self.beta}"


class Softmax(nn.Module):
    def __init__(self, tau: float = 1.0):
        super().__init__()
        self.tau = tau

    def forward(self, logits):
        return torch.softmax(logits / self.tau, dim=-1)


class GumbelSoftmax(nn.Module):
    """A differentiable sample from Categorical(softmax(logits)); hard=1 is straight-through."""

    def __init__(self, tau: float = 1.0, hard: float = 0.0):
        super().__init__()
        self.tau = tau
        self.hard = bool(hard)

    def forward(self, logits):
        return F.gumbel_softmax(logits, tau=self.tau, hard=self.hard, dim=-1)


_ALPHA = Param(1.0, 0.05, 3.0, help="scale of the negative branch")
_SLOPE = Param(0.01, 0.0, 0.5, 0.005, "slope for x < 0")
_BETA = Param(1.0, 0.1, 10.0, 0.1, "sharpness")
_TAU = Param(1.0, 0.05, 5.0, 0.05, "temperature")

REGISTRY: dict[str, ActivationSpec] = {
    s.name: s
    for s in [
        ActivationSpec("relu", lambda: nn.ReLU(), description="max(0, x)"),
        ActivationSpec("relu6", lambda: nn.ReLU6(), description="min(max(0, x), 6)"),
        ActivationSpec("leaky_relu", lambda alpha: nn.LeakyReLU(alpha), {"alpha": _SLOPE},
                       "x for x > 0, alpha * x otherwise"),
        ActivationSpec("prelu", lambda alpha: nn.PReLU(init=alpha), {"alpha": Param(0.25, 0.0, 1.0, 0.01, "initial learnable slope")},
                       "leaky ReLU with a learned slope"),
        ActivationSpec("elu", lambda alpha: nn.ELU(alpha), {"alpha": _ALPHA}, "alpha * (exp(x) - 1) for x < 0"),
        ActivationSpec("celu", lambda alpha: nn.CELU(alpha), {"alpha": _ALPHA}, "continuously differentiable ELU"),
        ActivationSpec("selu", lambda: nn.SELU(), description="scaled ELU, self-normalising"),
        ActivationSpec("gelu", lambda: nn.GELU(approximate="none"), description="x * Phi(x), exact (erf)"),
        ActivationSpec("gelu_tanh", lambda: nn.GELU(approximate="tanh"), description="GELU, tanh approximation"),
        ActivationSpec("silu", lambda: nn.SiLU(), description="x * sigmoid(x)"),
        ActivationSpec("swish", lambda beta: Swish(beta), {"beta": _BETA}, "x * sigmoid(beta * x)"),
        ActivationSpec("mish", lambda: nn.Mish(), description="x * tanh(softplus(x))"),
        ActivationSpec("sigmoid", lambda: nn.Sigmoid(), description="1 / (1 + exp(-x))"),
        ActivationSpec("tanh", lambda: nn.Tanh(), description="hyperbolic tangent"),
        ActivationSpec("softplus", lambda beta: nn.Softplus(beta), {"beta": _BETA}, "log(1 + exp(beta x)) / beta"),
        ActivationSpec("hardswish", lambda: nn.Hardswish(), description="x * relu6(x + 3) / 6"),
        ActivationSpec("softsign", lambda: nn.Softsign(), description="x / (1 + |x|)"),
        ActivationSpec("softmax", lambda tau: Softmax(tau), {"tau": _TAU}, vector=True,
                       description="exp(z / tau) / sum exp(z / tau)"),
        ActivationSpec("gumbel_softmax", lambda tau, hard: GumbelSoftmax(tau, hard),
                       {"tau": _TAU, "hard": Param(0.0, 0.0, 1.0, 1.0, "1 = straight-through one-hot")},
                       vector=True, description="softmax((z + Gumbel noise) / tau)"),
    ]
}


def names(vector: bool | None = None) -> list[str]:
    return [n for n, s in REGISTRY.items() if vector is None or s.vector == vector]


def get_spec(name: str) -> ActivationSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ActivationError(f"unknown activation {name!r}; known: {', '.join(REGISTRY)}") from None


def resolve_params(name: str, **params) -> dict[str, float]:
    """Fill defaults, refuse unknown keys and values outside a parameter's range."""
    spec = get_spec(name)
    unknown = set(params) - set(spec.params)
    if unknown:
        known = ", ".join(spec.params) or "none"
        raise ActivationError(f"{name} has no parameter {sorted(unknown)[0]!r} (parameters: {known})")
    out = {}
    for key, p in spec.params.items():
        value = float(params.get(key, p.default))
        if not math.isfinite(value) or not p.low <= value <= p.high:
            raise ActivationError(f"{name}.{key}={value} is outside [{p.low}, {p.high}]")
        out[key] = value
    return out


def create_act_layer(name: str, **params) -> nn.Module:
    """The only way to build an activation module. The module is tagged with its registry name
    and parameters so probes can find it and evaluate the same f' the explorer draws."""
    resolved = resolve_params(name, **params)
    module = get_spec(name).factory(**resolved)
    module.actlab_name, module.actlab_params = name, resolved
    return module


def derivatives(name: str, x: torch.Tensor, **params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f, f' and f'' of a scalar activation at x, by autograd through the real module."""
    spec = get_spec(name)
    if spec.vector:
        raise ActivationError(f"{name} is vector-valued; it has no scalar curve")
    module = create_act_layer(name, **params).to(x.dtype)
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = module(x)
        (dy,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        # Piecewise-linear functions give a d2y with no graph: it is zero everywhere.
        if dy.requires_grad:
            (d2y,) = torch.autograd.grad(dy.sum(), x)
        else:
            d2y = torch.zeros_like(x)
    return y.detach(), dy.detach(), d2y.detach()


def zones(x: torch.Tensor, dy: torch.Tensor, eps: float = 0.0, sat_frac: float = 0.05) -> dict[str, list[tuple[float, float]]]:
    """Intervals of x where no gradient flows (dead: |f'| <= eps) and where it nearly stops in a
    tail (saturated: not dead, |f'| <= sat_frac * max|f'|, reaching the end of the range).
    An isolated zero of f' (the minimum of GELU or hardswish) is neither: gradient flows around it."""
    g = dy.abs()
    dead = g <= eps
    saturated = ~dead & (g <= sat_frac * g.max())
    lo, hi = float(x[0]), float(x[-1])
    tails = [iv for iv in _intervals(x, saturated) if iv[0] == lo or iv[1] == hi]
    return {"dead": [iv for iv in _intervals(x, dead) if iv[1] > iv[0]], "saturated": tails}


def _intervals(x: torch.Tensor, mask: torch.Tensor) -> list[tuple[float, float]]:
    out, start = [], None
    xs, ms = x.tolist(), mask.tolist()
    for i, m in enumerate(ms):
        if m and start is None:
            start = xs[i]
        if start is not None and (not m or i == len(ms) - 1):
            out.append((start, xs[i] if m else xs[i - 1]))
            start = None
    return out


def properties(name: str, eps: float = 0.0, x_range: tuple[float, float] = (-6.0, 6.0), **params) -> dict:
    """Numerical properties read off autograd curves; nothing here is typed in by hand."""
    x = torch.linspace(*x_range, 12001, dtype=torch.float64)
    _, dy, _ = derivatives(name, x, **params)
    far = torch.tensor([-1e4, -1e2, 1e2, 1e4], dtype=torch.float64)
    y_far, _, _ = derivatives(name, far, **params)
    # Unbounded if the value still moves between 1e2 and 1e4; else the extreme seen on a wide grid.
    wide = derivatives(name, torch.linspace(-60, 60, 4001, dtype=torch.float64), **params)[0]
    low = -math.inf if y_far[0] < y_far[1] - 1 else float(min(wide.min(), y_far.min()))
    high = math.inf if y_far[3] > y_far[2] + 1 else float(max(wide.max(), y_far.max()))
    # Zero-centred: the mean output under a unit Gaussian input is near zero.
    z = torch.linspace(-8, 8, 8001, dtype=torch.float64)
    w = torch.exp(-z**2 / 2)
    mean_out = float((derivatives(name, z, **params)[0] * w).sum() / w.sum())
    # A kink shows as a jump in f' that does not shrink with the grid step.
    smooth = bool((dy[1:] - dy[:-1]).abs().max() < 0.05)
    z_ = zones(x, dy, eps)
    return {
        "output_range": [low, high],
        "monotonic": bool((dy >= -1e-9).all()),
        "zero_centred": abs(mean_out) < 0.1,
        "mean_output_std_normal_input": mean_out,
        "smooth": smooth,
        "derivative_range": [float(dy.min()), float(dy.max())],
        "dead_zone": z_["dead"],
        "saturation_zones": z_["saturated"],
    }


def describe(name: str) -> dict:
    spec = get_spec(name)
    out = {
        "name": name,
        "description": spec.description,
        "vector": spec.vector,
        "parameters": {k: {"default": p.default, "low": p.low, "high": p.high, "help": p.help} for k, p in spec.params.items()},
    }
    if not spec.vector:
        out["properties"] = properties(name)
    return out


def parse_param_args(items: list[str] | None) -> dict[str, float]:
    """`KEY=VALUE` strings from the command line."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ActivationError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ActivationError(f"--param {key} needs a number, got {value!r}") from None
    return out


# ---------------------------------------------------------------- torch / Hugging Face classes -> names
# Activations with a flat region (f' = 0 on an interval): a unit can die there, so `dead/` is the
# figure to read. For the others f' is almost never 0 and the tau-dormant score is the one that means
# something (tests/test_watch.py checks this set against `zones`).
RELU_LIKE = frozenset({"relu", "relu6", "hardtanh", "hardsigmoid", "hardswish"})

# Not scalar activations: they mix units (softmax over a vector, a gate, attention) or do nothing.
_SKIP_CLASSES = {"Softmax": "vector-valued", "Softmin": "vector-valued", "LogSoftmax": "vector-valued",
                 "Softmax2d": "vector-valued", "GLU": "gate over two halves of a vector",
                 "MultiheadAttention": "attention, not an elementwise activation",
                 "Identity": "identity", "LinearActivation": "identity"}


def _torch_class_map() -> dict[type, Callable[[nn.Module], tuple[str | None, dict]]]:
    """Exact class -> (registry name or None, parameters read off the instance). None: a known
    elementwise activation with no registry curve (its own forward still gives f' for `dead/`)."""
    return {
        nn.ReLU: lambda m: ("relu", {}),
        nn.ReLU6: lambda m: ("relu6", {}),
        nn.LeakyReLU: lambda m: ("leaky_relu", {"alpha": float(m.negative_slope)}),
        nn.PReLU: lambda m: ("prelu", {"alpha": float(m.weight.detach().float().mean())}),
        # In eval mode RReLU is a leaky ReLU with the mean slope; in train mode every slope is > 0 too.
        nn.RReLU: lambda m: ("leaky_relu", {"alpha": (float(m.lower) + float(m.upper)) / 2}),
        nn.ELU: lambda m: ("elu", {"alpha": float(m.alpha)}),
        nn.CELU: lambda m: ("celu", {"alpha": float(m.alpha)}),
        nn.SELU: lambda m: ("selu", {}),
        nn.GELU: lambda m: ("gelu_tanh" if m.approximate == "tanh" else "gelu", {}),
        nn.SiLU: lambda m: ("silu", {}),
        nn.Mish: lambda m: ("mish", {}),
        nn.Hardswish: lambda m: ("hardswish", {}),
        nn.Hardsigmoid: lambda m: (None, {}),
        nn.Hardtanh: lambda m: (None, {}),
        nn.Sigmoid: lambda m: ("sigmoid", {}),
        nn.Tanh: lambda m: ("tanh", {}),
        nn.Softplus: lambda m: ("softplus", {"beta": float(m.beta)}),
        nn.Softsign: lambda m: ("softsign", {}),
        nn.Tanhshrink: lambda m: (None, {}),
        nn.LogSigmoid: lambda m: (None, {}),
        Swish: lambda m: ("swish", {"beta": float(m.beta)}),
    }


def _hf_class_map() -> dict[type, Callable[[nn.Module], tuple[str | None, dict]]]:
    """transformers.activations (every ACT2FN entry builds one of these or a torch class)."""
    try:
        import transformers.activations as hf
    except Exception:  # transformers missing or broken: torch classes still work
        return {}
    out = {}
    table = {"GELUActivation": ("gelu", {}), "NewGELUActivation": ("gelu_tanh", {}),
             "FastGELUActivation": ("gelu_tanh", {}), "GELUTanh": ("gelu_tanh", {}),
             "PytorchGELUTanh": ("gelu_tanh", {}), "AccurateGELUActivation": ("gelu_tanh", {}),
             # x * sigmoid(1.702 x) is exactly our swish with beta = 1.702.
             "QuickGELUActivation": ("swish", {"beta": 1.702}),
             "SiLUActivation": ("silu", {}), "MishActivation": ("mish", {})}
    for cls_name, value in table.items():
        cls = getattr(hf, cls_name, None)
        if isinstance(cls, type):
            out[cls] = (lambda v: lambda m: v)(value)
    return out


_CLASS_MAP: dict | None = None


def class_map() -> dict:
    global _CLASS_MAP
    if _CLASS_MAP is None:
        _CLASS_MAP = {**_torch_class_map(), **_hf_class_map()}
    return _CLASS_MAP


@dataclass(frozen=True)
class ModuleActivation:
    """What a module is, as far as the probes care. kind: "exact" (its class is known: `dead/` is
    defined), "fallback" (an activation-like class we cannot vouch for: a subclass or an unknown
    class; zero fraction and tau-dormant only), "skip" (not an elementwise activation)."""
    kind: str
    activation: str | None = None
    params: dict = field(default_factory=dict)
    reason: str = ""


def identify(module: nn.Module) -> ModuleActivation | None:
    """Map a module to a registry name; None when it is not an activation at all."""
    if hasattr(module, "actlab_name"):
        return ModuleActivation("exact", module.actlab_name, dict(getattr(module, "actlab_params", {}) or {}),
                                "built by the registry")
    cls = type(module)
    if cls.__name__ in _SKIP_CLASSES and cls.__module__.startswith(("torch.nn", "transformers.activations")):
        return ModuleActivation("skip", reason=_SKIP_CLASSES[cls.__name__])
    cmap = class_map()
    if cls in cmap:
        name, params = cmap[cls](module)
        if name is not None:
            try:
                params = resolve_params(name, **params)
            except ActivationError as e:  # e.g. LeakyReLU(negative_slope=2): outside the slider range
                return ModuleActivation("exact", None, {}, f"{cls.__name__}: no f' overlay ({e})")
            return ModuleActivation("exact", name, params, f"{cls.__module__.split('.')[0]}.{cls.__name__}")
        return ModuleActivation("exact", None, {}, f"{cls.__name__}: no registry curve (no f' overlay)")
    known = tuple(cmap)
    if isinstance(module, known):
        base = next(k for k in cls.__mro__ if k in cmap)
        return ModuleActivation("fallback", None, {}, f"subclass of {base.__name__}: its forward may differ")
    if cls.__module__.startswith(("torch.nn.modules.activation", "transformers.activations")):
        return ModuleActivation("fallback", None, {}, f"{cls.__name__} is not in the class map")
    return None
