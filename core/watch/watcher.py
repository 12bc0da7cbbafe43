"""`watch(model)` and `Watcher`: the one probe path (users import it from actlab).

    from actlab import watch
    with watch(model, run="my-run", log_every=50) as w:
        for x, y in loader:
            loss = ...; loss.backward(); opt.step(); opt.zero_grad()
            w.step(loss=loss, acc=acc)            # floats or tensors; tensors stay on the device

`watch` finds the activation modules (every torch activation class, the `transformers.activations`
ones, and modules built by our registry), hooks them, and writes a run to the run store that the
monitor page follows live. Statistics accumulate on the device; the host fetches them once every
`log_every` steps. See core/probes.py for the definitions (dead, tau-dormant, zero fraction).

Extension point: `Watcher.on_flush` is a list of callables `fn(watcher, step, layers)` run at the
end of every flush, i.e. inside `step()`, after the optimizer step and before the next forward, so a
callback may edit weights. `Watcher.layers` maps each hooked layer to its `Target` (module name,
registry activation name, the module object).
"""
from __future__ import annotations

import contextlib
import inspect
import re
import sys
import time

import torch
from torch import nn

from ..errors import UserError
from ..activations import get_spec, identify
from .probes import ActivationProbes, Target, grad_norms
from .recycle import RecyclePair, find_pairs, recycle_mask, recycle_units
from ..store.runs import RunStore, check_lookup_name, validate_run_name

_FUNCTIONAL = re.compile(r"\b(?:F|functional|torch|nn\.functional)\.(relu6?|gelu|silu|mish|elu|selu|celu|leaky_relu|"
                         r"hardswish|hardtanh|sigmoid|tanh|softplus)\(")


def _unwrap(model: nn.Module) -> nn.Module:
    """The user's module under DDP / DataParallel / torch.compile wrappers, so layer names match."""
    for _ in range(4):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module) and type(model).__name__ in (
                "DistributedDataParallel", "DataParallel", "OptimizedModule"):
            model = inner
        else:
            break
    return model


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
        from ..activations import resolve_params

        targets[name] = Target(name, m, act, resolve_params(act), dead=True, role="act" if is_act else "pre",
                               cls=type(m).__name__,
                               reason="named by hand" + ("" if is_act else f": output of {type(m).__name__} fed to {act}"))
    # extra: {key: (activation module, registry name)}, hooked under a name of the caller's choosing
    # (e.g. backbone.layer0.ffn rather than its module path).
    from ..activations import resolve_params as _resolve

    for key, (m, act) in (extra or {}).items():
        ident = identify(m)
        targets[key] = Target(key, m, act, _resolve(act), dead=ident is not None and ident.kind == "exact",
                              role="act", cls=type(m).__name__, reason="named by the caller")
    return list(targets.values()), skipped


def _functional_note(model: nn.Module) -> str | None:
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


def format_table(targets: list[Target], skipped: list[dict], notes: list[str], recycle: dict | None = None) -> str:
    rows = [f"actlab watch: hooked {len(targets)} layer(s), skipped {len(skipped)}"]
    for t in targets:
        shown = t.activation or "-"
        how = f" | recycle: {recycle[t.name]}" if recycle and t.name in recycle else ""
        rows.append(f"  hooked   {t.name:<40} {t.cls:<24} {shown:<12} {t.definition:<8} {t.reason}{how}")
    for s in skipped:
        rows.append(f"  skipped  {s['name']:<40} {s['class']:<24} {s['reason']}")
    rows += [f"  note: {n}" for n in notes]
    return "\n".join(rows)


def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist
    return None


class Watcher:
    """Created by `watch(...)`. Use as a context manager, or call `close()` yourself."""

    def __init__(self, model: nn.Module, run: str | None = None, log_every: int = 50, runs_dir=None,
                 tau: float = 0.1, eps: float = 0.0, histograms: bool = True, grads: bool = True,
                 modules: dict[str, str] | None = None, auto: bool = True, exclude: tuple[str, ...] = (),
                 extra: dict | None = None,
                 window: int | str | None = None, stats_every: int = 16, bins: int = 64, hist_range=(-6.0, 6.0),
                 config: dict | None = None, kind: str = "watch", resume: bool = False, start_step: int = 0,
                 check=None, verbose: bool = True, optimizer=None, recycle_every: int | None = None,
                 recycle_tau: float | None = None, recycle_mode: str = "tau", recycle_pairs: dict | None = None):
        if int(log_every) < 1:
            raise UserError(f"log_every must be >= 1, got {log_every}")
        if not 0.0 <= float(tau) <= 1.0:
            raise UserError(f"tau must be in [0, 1], got {tau}")
        if window not in (None, "manual") and not (isinstance(window, int) and window >= 1):
            raise UserError(f"window must be None, 'manual' or a number of steps >= 1, got {window!r}")
        if recycle_every is not None and not (isinstance(recycle_every, int) and recycle_every >= 1):
            raise UserError(f"recycle_every must be a number of steps >= 1, got {recycle_every!r}")
        if recycle_mode not in ("tau", "dead"):
            raise UserError(f"recycle_mode must be 'tau' or 'dead', got {recycle_mode!r}")
        if recycle_tau is not None and not 0.0 <= float(recycle_tau) <= 1.0:
            raise UserError(f"recycle_tau must be in [0, 1], got {recycle_tau}")
        self.model = _unwrap(model)
        self.run = run or time.strftime("watch-%Y%m%d-%H%M%S")
        # A resumed run may carry a name an older version allowed; a new one must pass the strict check.
        (check_lookup_name if resume else validate_run_name)(self.run)
        self.log_every, self.tau, self.eps, self.grads, self.window = int(log_every), float(tau), float(eps), bool(grads), window
        self.on_flush: list = []
        self.check = check  # check(values, step) before anything of a flush is written; may raise (NaN guard)
        self.epoch: float | None = None  # set it (e.g. per epoch) and rows carry it
        self.step_count = self.last_flush_step = int(start_step)
        self.last: dict[str, float] = {}
        self.closed = False
        d = _dist()
        self.rank, self.world = (d.get_rank(), d.get_world_size()) if d else (0, 1)

        targets, skipped = find_layers(self.model, modules, auto, tuple(exclude), extra)
        # Which Linear/Conv pair each layer's units live between (core/recycle.py), for recycling.
        self.recycle_pairs = find_pairs(self.model, targets, recycle_pairs)
        self.recycle_every, self.recycle_mode = recycle_every, recycle_mode
        self.recycle_tau = self.tau if recycle_tau is None else float(recycle_tau)
        self._last_recycle = self.step_count
        self._optimizer = optimizer
        self.events: list[dict] = []  # what the control path did in this process (also in the store)
        notes = []
        fn_note = _functional_note(self.model) if auto else None
        if fn_note:
            notes.append(fn_note)
        if not targets and auto:
            notes.append("no activation modules found; name layers by hand with modules={'fc1': 'relu'}")
        self.table = {"hooked": [{"name": t.name, "class": t.cls, "activation": t.activation, "params": t.params,
                                  "definition": t.definition, "dead": t.dead, "role": t.role, "reason": t.reason,
                                  "recycle": self._recycle_text(t.name)}
                                 for t in targets],
                      "skipped": skipped, "notes": notes}
        self.probes = ActivationProbes(targets, eps=eps, bins=bins, hist_range=hist_range, stats_every=stats_every,
                                       histograms=histograms)
        self.layers: dict[str, Target] = {t.name: t for t in targets}

        self.writer = None
        if self.rank == 0:
            cfg = {"model": type(self.model).__name__, "log_every": self.log_every, "tau": self.tau, "eps": self.eps,
                   "window": window, "stats_every": stats_every, "world_size": self.world, **(config or {}),
                   "watch": self.table}
            layers = {t.name: {"activation": t.activation, "params": dict(t.params), "definition": t.definition,
                               "dead": t.dead, "class": t.cls, "recycle": self._recycle_text(t.name)} for t in targets}
            store = RunStore(runs_dir)  # None: actlab.paths.runs_dir(), read now
            try:
                # On resume, what a crashed process wrote after start_step is superseded.
                self.writer = store.create(self.run, cfg, kind=kind, resume=resume, layers=layers,
                                           resume_step=self.step_count if resume else None)
            except BaseException:
                self.probes.remove()  # e.g. the run exists: leave the model as it was
                raise
            if verbose:
                print(format_table(targets, skipped, notes, {t.name: self._recycle_text(t.name) for t in targets}),
                      file=sys.stderr)

        # Padding mask: taken from the outermost running module whose forward takes `attention_mask`
        # (inner ones, like BERT's attention, get the 4-D additive form, which is not a padding mask).
        self._handles = []
        self._mask_depth = 0
        self._mask_modules = self._mask_owners() if targets else []
        self._attach_mask_hooks()
        # Gradient norms: read just before the optimizer step that ends a log interval (any optimizer
        # over this model's parameters, whether or not the loop zeroes grads before calling step()).
        self._param_ids = {id(p) for p in self.model.parameters()}
        self._grad_names: list[str] = []
        self._grad_norms: torch.Tensor | None = None
        self._opt_handle = None
        # The hook also finds the loop's optimizer, whose state a recycle must reset (only needed
        # when some layer can be recycled: a watch with nothing to recycle adds no per-step hook for it).
        recyclable = any(isinstance(p, RecyclePair) for p in self.recycle_pairs.values())
        if self.grads or (self._optimizer is None and recyclable):
            from torch.optim.optimizer import register_optimizer_step_pre_hook

            self._opt_handle = register_optimizer_step_pre_hook(self._opt_pre_hook)

        self._sums: dict[str, object] = {}
        self._counts: dict[str, int] = {}
        self._busy = 0.0  # host seconds inside the watcher since the last flush
        self._t_flush = time.perf_counter()
        self._hook_base = 0.0
        self._window_start = self.step_count

    # ---------------------------------------------------------------- padding mask
    def _attach_mask_hooks(self):
        for m in self._mask_modules:
            self._handles.append(m.register_forward_pre_hook(self._mask_pre_hook(m), with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._mask_post_hook, always_call=True))

    def _mask_owners(self) -> list[nn.Module]:
        owners = []
        for m in self.model.modules():
            try:
                if "attention_mask" in inspect.signature(m.forward).parameters:
                    owners.append(m)
            except (TypeError, ValueError):
                continue
        return owners

    def _mask_pre_hook(self, module):
        try:
            sig = inspect.signature(module.forward)
        except (TypeError, ValueError):
            sig = None

        def hook(mod, args, kwargs):
            self._mask_depth += 1
            if self._mask_depth > 1:
                return
            mask = kwargs.get("attention_mask")
            if mask is None and sig is not None and args:
                try:
                    mask = sig.bind_partial(*args, **kwargs).arguments.get("attention_mask")
                except TypeError:
                    mask = None
            self.probes.mask = mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        return hook

    def _mask_post_hook(self, module, inputs, output):
        self._mask_depth = max(0, self._mask_depth - 1)
        if self._mask_depth == 0:
            self.probes.mask = None

    # ---------------------------------------------------------------- gradient norms
    def _opt_pre_hook(self, opt, args, kwargs):
        if self._optimizer is None and opt.param_groups and opt.param_groups[0]["params"] \
                and id(opt.param_groups[0]["params"][0]) in self._param_ids:
            self._optimizer = opt
        if not self.grads or (self.step_count + 1) % self.log_every != 0 or not opt.param_groups \
                or not opt.param_groups[0]["params"]:
            return
        if id(opt.param_groups[0]["params"][0]) not in self._param_ids:
            return
        t0 = time.perf_counter()
        self._grad_names, self._grad_norms = grad_norms(self.model.named_parameters())
        self._busy += time.perf_counter() - t0

    # ---------------------------------------------------------------- the loop's side
    def step(self, loss=None, **scalars) -> dict | None:
        """One optimizer step done. `loss` is stored as loss/train, other scalars under their own
        names (mean over the log interval). Returns the flushed values at a log step, else None."""
        t0 = time.perf_counter()
        self.step_count += 1
        if loss is not None:
            scalars = {"loss/train": loss, **scalars}
        for k, v in scalars.items():
            if isinstance(v, torch.Tensor):
                v = v.detach()
                # A loss is 0-d already: no mean kernel; sums grow in place (one kernel a step, no new tensor).
                if v.dim() or v.dtype != torch.float32:
                    v = v.float().mean()
                prev = self._sums.get(k)
                if prev is None:
                    self._sums[k] = v.clone()
                elif isinstance(prev, torch.Tensor) and prev.device == v.device:
                    prev.add_(v)
                else:
                    self._sums[k] = prev + v
            elif v is None:
                continue
            else:
                v = float(v)
                prev = self._sums.get(k)
                self._sums[k] = v if prev is None else prev + v
            self._counts[k] = self._counts.get(k, 0) + 1
        self._busy += time.perf_counter() - t0
        if self.step_count % self.log_every == 0:
            return self.flush()
        return None

    def flush(self, step: int | None = None) -> dict:
        """Fetch and write everything since the last flush (step() calls this every log_every steps)."""
        t0 = time.perf_counter()
        step = self.step_count if step is None else int(step)
        self.last_flush_step = step
        if self._grad_norms is None and self.grads:  # no optimizer hook fired (e.g. a hand-written update)
            self._grad_names, self._grad_norms = grad_norms(self.model.named_parameters())
        d = _dist()
        reduce = (lambda t: d.all_reduce(t, op=d.ReduceOp.SUM)) if d is not None else None
        layers = self.probes.flush(self.tau, reduce=reduce)
        # Loop scalars and gradient norms: one more fetch.
        keys = list(self._sums)
        tensors = [torch.as_tensor(self._sums[k], dtype=torch.float32).reshape(1).cpu() if not isinstance(self._sums[k], torch.Tensor)
                   else self._sums[k].reshape(1) for k in keys]
        host: list[float] = []
        if tensors or self._grad_norms is not None:
            dev = self._grad_norms.device if self._grad_norms is not None else tensors[0].device
            parts = [t.to(dev) for t in tensors] + ([self._grad_norms.reshape(-1)] if self._grad_norms is not None else [])
            host = torch.cat(parts).cpu().tolist()
        values: dict[str, float] = {}
        for i, k in enumerate(keys):
            values[k] = host[i] / self._counts[k]
        if self._grad_norms is not None:
            values.update({f"grad_norm/{n}": v for n, v in zip(self._grad_names, host[len(keys):])})
        for name, s in layers.items():
            if "dead" in s:
                values[f"dead/{name}"] = s["dead"]
            if "revived" in s:
                values[f"revived/{name}"] = s["revived"]
            values[f"dormant/{name}"] = s["dormant"]
            if s["zero_frac"] == s["zero_frac"]:
                values[f"zero_frac/{name}"] = s["zero_frac"]
        self._sums, self._counts = {}, {}
        self._grad_norms, self._grad_names = None, []
        if self.check is not None:
            self.check(values, step)
        now = time.perf_counter()
        busy = self._busy + (now - t0) + (self.probes.hook_seconds - self._hook_base)
        values["watch/overhead_pct"] = 100.0 * busy / max(now - self._t_flush, 1e-9)
        if self.writer is not None:
            self.writer.log_scalars(step, values, epoch=self.epoch)
            edges = self.probes.edges()
            for name, s in layers.items():
                if self.probes.histograms and s["sampled_batches"]:
                    self.writer.log_histogram(step, f"pre/{name}", edges, s["hist"], epoch=self.epoch)
                if s["sampled_batches"]:
                    self.writer.log_unit_activity(step, name, s["activity"], epoch=self.epoch)
                self.writer.log_unit_activity(step, f"score/{name}", s["score"], epoch=self.epoch)
        if self.window is None or (isinstance(self.window, int) and step - self._window_start >= self.window):
            self.end_window()
        self.last = values
        self._control(step, layers)
        for fn in list(self.on_flush):
            fn(self, step, layers)
        self._busy = 0.0
        self._hook_base = self.probes.hook_seconds
        self._t_flush = time.perf_counter()
        return values

    # ---------------------------------------------------------------- acting on the run
    def _recycle_text(self, name: str) -> str:
        p = self.recycle_pairs.get(name)
        return p.describe() if isinstance(p, RecyclePair) else f"cannot recycle: {p}"

    def _control(self, step: int, layers: dict):
        """At a flush, between optimizer steps: the scheduled recycle, then the commands the dashboard
        or `runs recycle` queued. Under DDP rank 0 reads the commands and every rank applies them
        (the masks were all-reduced and the redraw is seeded by step and layer, so replicas agree)."""
        todo = []
        if self.recycle_every and step - self._last_recycle >= self.recycle_every:
            self._last_recycle = step
            todo += [(None, n, self.recycle_mode, self.recycle_tau, f"scheduled every {self.recycle_every} steps")
                     for n, p in self.recycle_pairs.items() if isinstance(p, RecyclePair)]
        cmds = self.writer.pending_commands() if self.writer is not None else []
        d = _dist()
        if d is not None and self.world > 1:
            box = [cmds]
            d.broadcast_object_list(box, src=0)
            cmds = box[0]
        for c in cmds:
            a = c["args"] if isinstance(c["args"], dict) else {}
            if c["kind"] != "recycle":
                self._event(step, "refused", a.get("layer"), None, f"unknown command {c['kind']!r}", c["id"], "refused")
                continue
            try:
                tau = float(a.get("tau", self.tau))
            except (TypeError, ValueError):
                tau = float("nan")
            if not 0.0 <= tau <= 1.0:
                self._event(step, "refused", a.get("layer"), None, f"tau must be in [0, 1], got {a.get('tau')!r}",
                            c["id"], "refused")
                continue
            todo.append((c["id"], a.get("layer"), "dead" if a.get("dead") else "tau", tau, "asked for"))
        for cid, name, mode, tau, why in todo:
            self._recycle_one(step, layers, cid, name, mode, tau, why)

    def _recycle_one(self, step, layers, cid, name, mode, tau, why):
        pair = self.recycle_pairs.get(name)
        if name not in self.layers:
            return self._event(step, "refused", name, None, f"no hooked layer {name!r}", cid, "refused")
        if not isinstance(pair, RecyclePair):
            return self._event(step, "refused", name, None, f"cannot recycle: {pair}", cid, "refused")
        stats = layers.get(name)
        if stats is None:
            return self._event(step, "refused", name, None, "no statistics for this layer yet (no training forward)",
                               cid, "refused")
        mask = recycle_mask(stats, mode, tau)
        if mask is None:
            return self._event(step, "refused", name, None,
                               f"dead/ is not defined for {self.layers[name].cls}; recycle by tau instead", cid, "refused")
        import zlib

        gen = torch.Generator().manual_seed(zlib.crc32(f"{step}:{name}".encode()))
        try:
            done = recycle_units(pair, mask, self._optimizer, self.model, gen)
        except (ValueError, RuntimeError) as e:
            return self._event(step, "refused", name, None, f"recycle failed: {e}", cid, "refused")
        self.probes.restart_window(name)  # the next window shows what the recycle did
        what = "dead" if mode == "dead" else f"τ-dormant (τ={tau:g})"
        reason = f"{done['units']} of {mask.numel()} units {what}, {why}"
        reason += ("; optimizer state reset" if self._optimizer is not None
                   else "; no optimizer seen, so its state was NOT reset (pass watch(..., optimizer=opt))")
        if self.writer is not None:
            self.writer.log_scalars(step, {f"recycled/{name}": done["units"]}, epoch=self.epoch)
        self._event(step, "recycle", name, done["units"], reason, cid, "applied",
                    {**done, "pair": pair.describe(), "mode": mode, "tau": tau})

    def _event(self, step, kind, layer, units, reason, cid=None, state=None, details=None):
        ev = {"step": step, "kind": kind, "layer": layer, "units": units, "reason": reason, "command_id": cid}
        self.events.append(ev)
        if self.writer is not None:
            self.writer.log_event(step, kind, layer, units, reason, cid, details, command_state=state)

    def end_window(self):
        """Close the dead/dormant window (trainers call this at epoch ends with window="manual")."""
        self.probes.end_window()
        self._window_start = self.step_count

    def log(self, values: dict, step: int | None = None, epoch: float | None = None):
        """Write values now (e.g. evaluation metrics): tensors are fetched in one copy."""
        keys = list(values)
        vals = [values[k] for k in keys]
        tens = [i for i, v in enumerate(vals) if isinstance(v, torch.Tensor)]
        if tens:
            fetched = torch.stack([vals[i].detach().float().reshape(()) for i in tens]).cpu().tolist()
            for i, f in zip(tens, fetched):
                vals[i] = f
        if self.writer is not None and keys:
            self.writer.log_scalars(self.step_count if step is None else step, dict(zip(keys, map(float, vals))),
                                    epoch=self.epoch if epoch is None else epoch)

    def paused(self):
        """Forward passes inside do not count (model.eval() passes never count anyway)."""
        return self.probes.paused()

    @contextlib.contextmanager
    def detached(self):
        """No hooks at all inside (zero cost; bench/watch_overhead.py times this against watching)."""
        self.probes.remove()
        for h in self._handles:
            h.remove()
        self._handles = []
        opt_was = self._opt_handle is not None
        if opt_was:
            self._opt_handle.remove()
            self._opt_handle = None
        try:
            yield
        finally:
            if not self.closed:
                self.probes.attach()
                self._attach_mask_hooks()
                if opt_was:
                    from torch.optim.optimizer import register_optimizer_step_pre_hook

                    self._opt_handle = register_optimizer_step_pre_hook(self._opt_pre_hook)

    def exact_dead(self, batches, step: int | None = None, epoch: float | None = None) -> dict[str, float]:
        """Dead fraction in eval mode over fixed batches, logged as dead_exact/<layer>."""
        out = self.probes.exact_dead_count(self.model, batches)
        if out:
            self.log(out, step, epoch)
        return out

    # ---------------------------------------------------------------- end
    def close(self, state: str = "finished", reason: str | None = None):
        if self.closed:
            return
        self.closed = True
        try:
            if state == "finished" and self.step_count != self.last_flush_step:
                self.flush()  # the partial last interval (every rank: the flush all-reduces)
        finally:
            self.remove_hooks()
            if self.writer is not None:
                try:
                    for c in self.writer.pending_commands():
                        self._event(self.step_count, "refused", (c["args"] or {}).get("layer"), None,
                                    f"the run ended ({state}) before the command was applied", c["id"], "refused")
                except Exception:  # the status below matters more than a refusal note
                    pass
                self.writer.set_status(state, reason)
                self.writer.close()

    def remove_hooks(self):
        self.probes.remove()
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._opt_handle is not None:
            self._opt_handle.remove()
            self._opt_handle = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("stopped", "KeyboardInterrupt")
        else:
            self.close("failed", f"{exc_type.__name__}: {exc}"[:500])
        return False


def watch(model: nn.Module, run: str | None = None, log_every: int = 50, **kwargs) -> Watcher:
    """Hook `model` and start a run; see `Watcher` for the keywords (runs_dir, tau, eps, histograms,
    grads, modules, window, stats_every, config; for recycling: optimizer, recycle_every,
    recycle_tau, recycle_mode, recycle_pairs -- core/recycle.py)."""
    return Watcher(model, run=run, log_every=log_every, **kwargs)


__all__ = ["watch", "Watcher", "find_layers", "format_table"]
