"""Which layers to watch: the activation modules of any model, or the ones named by hand.

`find_layers(model)` returns the `Target`s to hook and the modules it skipped with the reason;
`format_table` prints both (the watch table on stderr, also kept in run.json). `unwrap` sees
through DDP / DataParallel / torch.compile wrappers so layer names match the user's module.
"""
from __future__ import annotations

import inspect
import re

from torch import nn

from ..activations import get_spec, identify, resolve_params
from ..errors import UserError
from .probe_layer import Target

_FUNCTIONAL = re.compile(r"\b(?:F|functional|torch|nn\.functional)\.(relu6?|gelu|silu|mish|elu|selu|celu|leaky_relu|"
                         r"hardswish|hardtanh|sigmoid|tanh|softplus)\(")


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under DDP / DataParallel / torch.compile wrappers, so layer names match."""
    for _ in range(4):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module) and type(model).__name__ in (
                "DistributedDataParallel", "DataParallel", "OptimizedModule"):
            model = inner
        else:
            break
    return model


def is_compiled(model: nn.Module) -> bool:
    """Whether torch.compile wraps the model or any of its submodules."""
    seen = [model, getattr(model, "module", None), getattr(model, "_orig_mod", None)]
    seen += list(unwrap(model).modules())
    return any(type(m).__name__ == "OptimizedModule" for m in seen if m is not None)


COMPILE_NOTE = ("torch.compile: the hooks run eagerly (one graph break per watched layer; inductor may fuse "
                "differently around it, so results match an unwatched run to float rounding, not bit for bit), and the "
                "compile caches are reset when watching starts and ends, so a model compiled before watch() re-traces")


def find_layers(model: nn.Module, modules: dict[str, str] | None = None, auto: bool = True,
                exclude: tuple[str, ...] = (), extra: dict | None = None) -> tuple[list[Target], list[dict]]:
    """(targets to hook, skipped rows). `modules` names layers by hand: {"features.3": "relu"} hooks
    that module; if it is not an activation (a Linear or Conv whose output feeds F.relu in forward),
    its output is taken as the pre-activation of the named activation. `exclude`: name prefixes
    the automatic search leaves alone (e.g. a frozen backbone)."""
    targets: dict[str, Target] = {}
    skipped: list[dict] = []
    if auto:
        for name, m in model.named_modules():
            ident = identify(m)
            if ident is None or not name:
                continue
            if any(name == p or name.startswith(p + ".") for p in exclude):
                skipped.append({"name": name, "class": type(m).__name__, "reason": "excluded by the caller"})
                continue
            cls = type(m).__name__
            if ident.kind == "skip":
                skipped.append({"name": name, "class": cls, "reason": ident.reason})
                continue
            targets[name] = Target(name, m, ident.activation, ident.params, dead=ident.kind == "exact",
                                   role="act", cls=cls, reason=ident.reason)
    for name, act in (modules or {}).items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            known = [n for n, _ in model.named_modules() if n]
            raise UserError(f"modules: no submodule {name!r} in {type(model).__name__} "
                            f"(some names: {', '.join(known[:8])})") from None
        spec = get_spec(act)  # an unknown name is an ActivationError (a UserError) right here
        if spec.vector:
            raise UserError(f"modules: {act!r} is vector-valued; name a scalar activation")
        ident = identify(m)
        is_act = ident is not None and ident.kind != "skip"
        targets[name] = Target(name, m, act, resolve_params(act), dead=True, role="act" if is_act else "pre",
                               cls=type(m).__name__,
                               reason="named by hand" + ("" if is_act else f": output of {type(m).__name__} fed to {act}"))
    # extra: {key: (activation module, registry name)}, hooked under a name of the caller's choosing
    # (e.g. backbone.layer0.ffn rather than its module path).
    for key, (m, act) in (extra or {}).items():
        ident = identify(m)
        targets[key] = Target(key, m, act, resolve_params(act), dead=ident is not None and ident.kind == "exact",
                              role="act", cls=type(m).__name__, reason="named by the caller")
    return [_in_place(t) for t in targets.values()], skipped


# In place, the hook's "input" is the output already. These rules still read dead/ right off the
# output (relu: out > 0 iff x > 0; the clamps: lo < out < hi iff lo < x < hi; leaky_relu: never dead).
_IN_PLACE_DEAD_OK = {"relu", "relu6", "leaky_relu"}


def _in_place(t: Target) -> Target:
    if t.role != "act" or not getattr(t.module, "inplace", False):
        return t
    note = "in-place: the hook sees the output, so pre/ histograms show outputs"
    if t.dead and not (t.activation in _IN_PLACE_DEAD_OK or t.cls == "Hardtanh"):
        t.dead = False
        note += "; dead/ left out (its test needs the input); dormant/ and zero_frac/ read the output"
    t.reason = f"{t.reason}; {note}" if t.reason else note
    return t


def functional_note(model: nn.Module) -> str | None:
    """Models that call F.relu in forward have no module to hook: say so, with the explicit form."""
    seen, hits = set(), []
    for m in model.modules():
        cls = type(m)
        if cls in seen or cls.__module__.startswith(("torch.", "transformers.")):
            continue
        seen.add(cls)
        try:
            src = inspect.getsource(cls.forward)
        except (OSError, TypeError):
            continue
        hits += [f"{cls.__name__}: {m_.group(0)[:-1]}" for m_ in _FUNCTIONAL.finditer(src)]
    if not hits:
        return None
    return ("forward calls " + ", ".join(sorted(set(hits))[:6]) + ": a functional call has no module to hook; "
            "pass modules={'<the Linear/Conv feeding it>': '<activation>'} to watch it")


def format_table(targets: list[Target], skipped: list[dict], notes: list[str],
                 columns: dict[str, dict[str, str]] | None = None) -> str:
    """`columns`: {layer: {column: text}} that plug-ins add (the recycler's "recycle")."""
    rows = [f"actlab watch: hooked {len(targets)} layer(s), skipped {len(skipped)}"]
    for t in targets:
        shown = t.activation or "-"
        how = "".join(f" | {k}: {v}" for k, v in ((columns or {}).get(t.name) or {}).items())
        rows.append(f"  hooked   {t.name:<40} {t.cls:<24} {shown:<12} {t.definition:<8} {t.reason}{how}")
    for s in skipped:
        rows.append(f"  skipped  {s['name']:<40} {s['class']:<24} {s['reason']}")
    rows += [f"  note: {n}" for n in notes]
    return "\n".join(rows)


__all__ = ["COMPILE_NOTE", "find_layers", "format_table", "functional_note", "is_compiled", "unwrap"]
