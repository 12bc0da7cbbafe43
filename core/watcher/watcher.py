"""`watch(model)` and `Watcher`: the one probe path (users import it from actlab).

    from actlab import watch
    with watch(model, run="my-run", log_every=50) as w:
        for x, y in loader:
            loss = ...; loss.backward(); opt.step(); opt.zero_grad()
            w.step(loss=loss, acc=acc)            # floats or tensors; tensors stay on the device

`watch` finds the activation modules (layers.py), hooks them (probes.py), and writes a run to the
run store that the monitor page follows live. Statistics accumulate on the device; the host
fetches them once every `log_every` steps (the flush). That is all the Watcher does: probes, the
store and the flush. Everything else is a plug-in (plugins.py, whose docstring is the hook
interface): the recycler (recycler.py), the non-finite guard (guards.py), yours
(`watch(..., plugins=[...])`).

Each flush builds one typed `FlushRecord` (records.py), hands it to the plug-ins' `before_write`,
writes it, then hands it to their `on_flush`, inside `step()`: after the optimizer step and before
the next forward, so a plug-in may edit weights there.

Settings are grouped (config.py): `Watcher(model, ProbeConfig(...), StoreConfig(...), plugins=[...])`;
`watch(model, **kwargs)` takes them as flat keywords (log_every, tau, eps, histograms, grads,
modules, auto, exclude, extra, window, stats_every, bins, hist_range; run, runs_dir, config,
kind, resume, start_step; recycle_every, recycle_tau, recycle_mode, recycle_pairs) plus
optimizer, check, plugins and verbose.
"""
from __future__ import annotations

import contextlib
import sys
import time

import torch
from torch import nn

from ..sinks import parse_sinks
from ..store.runs import RunStore
from ._dist import dist
from .budget import DEFAULT_BUDGET, OverheadBudget, check_budget
from .config import (
    ProbeConfig,
    RecycleConfig,
    StoreConfig,
    WatchConfig,
    known_kwargs,
    split_kwargs,
)
from .guards import NonFiniteGuard
from .layers import (
    COMPILE_NOTE,
    find_layers,
    format_table,
    functional_note,
    is_compiled,
    unwrap,
)
from .padding import PaddingMask
from .plugins import PluginSet, WatchPlugin
from .probes import ActivationProbes, grad_norms
from .reductions import set_grad
from .records import Event, FlushRecord, Histogram, LayerStats
from .recycler import Recycler
from .safe_store import SafeStore


def default_plugins(recycle: RecycleConfig | None = None, optimizer=None, check=None,
                    budget: float | None = DEFAULT_BUDGET) -> list[WatchPlugin]:
    """What every watch has: the recycler (commands from the dashboard work on any run), the
    overhead budget (budget.py; None: none), and the non-finite guard when a `check` is given."""
    out: list[WatchPlugin] = [NonFiniteGuard(check)] if check is not None else []
    out.append(Recycler(recycle, optimizer))
    return out + ([OverheadBudget(budget)] if budget is not None else [])


class Watcher:
    """Created by `watch(...)`. Use as a context manager, or call `close()` yourself.
    `plugins=None` gives `default_plugins()`; a list replaces them."""

    def __init__(self, model: nn.Module, probe: ProbeConfig | None = None, store: StoreConfig | None = None, *,
                 plugins: list | None = None, verbose: bool = True):
        probe, store = probe or ProbeConfig(), store or StoreConfig()
        self.config = WatchConfig(probe=probe, store=store)
        self.compiled = is_compiled(model)
        self.model = unwrap(model)
        self.run = store.run
        self.epoch: float | None = None  # set it (e.g. per epoch) and rows carry it
        self.step_count = self.last_flush_step = store.start_step
        self.last: dict[str, float] = {}  # the scalars of the last flush
        self.closed = False
        self.events: list[Event] = []  # every event of this process (also in the store)
        self._new_events: list[Event] = []
        d = dist()
        self.rank, self.world = (d.get_rank(), d.get_world_size()) if d else (0, 1)

        targets, skipped = find_layers(self.model, probe.modules, probe.auto, probe.exclude, probe.extra)
        self.layers = {t.name: t for t in targets}
        self.plugins = PluginSet(default_plugins() if plugins is None else plugins)
        notes = [functional_note(self.model)] if probe.auto else []
        notes = [n for n in notes if n]
        if self.compiled and targets:
            notes.append(COMPILE_NOTE)
        if not targets and probe.auto:
            notes.append("no activation modules found; name layers by hand with modules={'fc1': 'relu'}")
        columns = self.plugins.layer_notes(self)
        self.table = {"hooked": [{"name": t.name, "class": t.cls, "activation": t.activation, "params": t.params,
                                  "definition": t.definition, "dead": t.dead, "role": t.role, "reason": t.reason,
                                  **columns.get(t.name, {})} for t in targets],
                      "skipped": skipped, "notes": notes}
        self.probes = ActivationProbes(targets, eps=probe.eps, bins=probe.bins, hist_range=probe.hist_range,
                                       stats_every=probe.stats_every, histograms=probe.histograms,
                                       hist_sample=probe.hist_sample, fused=probe.fused)
        self.store: SafeStore | None = None  # the run's writer, on rank 0 only
        if self.rank == 0:
            self.store = SafeStore(self._run_opener(targets, columns), lambda: self.step_count,
                                   store.lock_timeout, store.retry_after)
            try:
                self.store.start()
            except BaseException:
                self.probes.remove()  # e.g. the run exists: leave the model as it was
                raise
            if verbose:
                print(format_table(targets, skipped, notes, columns), file=sys.stderr)

        self._padding = PaddingMask(self.model, self.probes) if targets else None
        self._param_ids = {id(p) for p in self.model.parameters()}
        self._grad_names: list[str] = []
        self._grad_norms: torch.Tensor | None = None
        self._opt_handle = None
        self._attach()
        self._sums: dict[str, object] = {}
        self._counts: dict[str, int] = {}
        self._busy = 0.0  # host seconds inside the watcher since the last flush
        self._t_flush = time.perf_counter()
        self._hook_base = 0.0
        self._window_start = self.step_count
        self.plugins.call("on_start", self)

    @property
    def writer(self):
        """The run's writer (older name of `store`)."""
        return self.store

    def _run_opener(self, targets, columns):
        """open(again) -> RunWriter: creates the run; again=True reopens it (after a store failure)."""
        probe, store = self.config.probe, self.config.store
        cfg = {"model": type(self.model).__name__, "log_every": probe.log_every, "tau": probe.tau, "eps": probe.eps,
               "window": probe.window, "stats_every": probe.stats_every, "world_size": self.world,
               "overhead_budget": next((p.budget for p in self.plugins.plugins if isinstance(p, OverheadBudget)), None),
               **(store.config or {}), "watch": self.table}
        layers = {t.name: {"activation": t.activation, "params": dict(t.params), "definition": t.definition,
                           "dead": t.dead, "class": t.cls, **columns.get(t.name, {})} for t in targets}

        def open_run(again: bool):
            # On resume, what a crashed process wrote after start_step is superseded. runs_dir None:
            # actlab.paths.runs_dir(), read now.
            resume_step = self.step_count if store.resume and not again else None
            return RunStore(store.runs_dir).create(self.run, cfg, kind=store.kind, resume=store.resume or again,
                                                   layers=layers, resume_step=resume_step)
        return open_run

    # ---------------------------------------------------------------- hooks
    def _attach(self):
        self.probes.attach()
        if self._padding is not None:
            self._padding.attach()
        if self.config.probe.grads and self._opt_handle is None:
            # Gradient norms: read just before the optimizer step that ends a log interval (any optimizer
            # over this model's parameters, whether or not the loop zeroes grads before calling step()).
            from torch.optim.optimizer import register_optimizer_step_pre_hook

            self._opt_handle = register_optimizer_step_pre_hook(self._opt_pre_hook)
        self._recompile()

    def remove_hooks(self):
        self.probes.remove()
        if self._padding is not None:
            self._padding.remove()
        if self._opt_handle is not None:
            self._opt_handle.remove()
            self._opt_handle = None
        self._recompile()

    def _recompile(self):
        # A graph dynamo traced before the hooks came (or went) is reused without them: start afresh.
        if self.compiled and self.layers:
            torch.compiler.reset()

    def _opt_pre_hook(self, opt, args, kwargs):
        if (self.step_count + 1) % self.config.probe.log_every != 0 or not opt.param_groups \
                or not opt.param_groups[0]["params"] or id(opt.param_groups[0]["params"][0]) not in self._param_ids:
            return
        t0 = time.perf_counter()
        self._grad_names, self._grad_norms = grad_norms(self.model.named_parameters())
        self._busy += time.perf_counter() - t0

    # ---------------------------------------------------------------- the loop's side
    def step(self, loss=None, **scalars) -> FlushRecord | None:
        """One optimizer step done. `loss` is stored as loss/train, other scalars under their own
        names (mean over the log interval). Returns the flush's record at a log step, else None."""
        t0 = time.perf_counter()
        self.step_count += 1
        if loss is not None:
            self._add("loss/train", loss)
        for k, v in scalars.items():
            if v is not None:
                self._add(k, v)
        self.plugins.call("on_step", self, self.step_count)
        self._busy += time.perf_counter() - t0
        if self.step_count % self.config.probe.log_every == 0:
            return self.flush()
        return None

    def _add(self, k: str, v):
        """Add one scalar to its interval sum: on the host, or on the tensor's device (no sync)."""
        if isinstance(v, torch.Tensor) and v.is_cpu and v.numel() == 1:
            v = v.item()  # on the CPU reading a scalar waits on nothing, and costs less than an add kernel
        if isinstance(v, torch.Tensor):
            # A loss is 0-d already: no mean kernel; sums grow in place (one kernel a step, no new
            # tensor, and no detach: grad mode is off for the add). Never keep the caller's
            # tensor itself: it may be a buffer they update in place.
            if v.dim() or v.dtype != torch.float32:
                v = v.detach().float().mean()
            prev = self._sums.get(k)
            if prev is None:
                self._sums[k] = v.detach().clone()
            elif isinstance(prev, torch.Tensor) and prev.device == v.device:
                grad = torch.is_grad_enabled()
                set_grad(False)
                try:
                    prev.add_(v)
                finally:
                    set_grad(grad)
            else:
                self._sums[k] = prev + v.detach()
        else:
            prev = self._sums.get(k)
            self._sums[k] = float(v) if prev is None else prev + float(v)
        self._counts[k] = self._counts.get(k, 0) + 1

    def _loop_scalars(self) -> dict[str, float]:
        """The loop's scalars (interval means) and the gradient norms, in one fetch."""
        on_device = [k for k, v in self._sums.items() if isinstance(v, torch.Tensor)]
        parts = [self._sums[k].reshape(1) for k in on_device]
        if self._grad_norms is not None:
            parts.append(self._grad_norms.reshape(-1))
        fetched: list[float] = []
        if parts:  # sums kept on the host (CPU scalars) need no fetch
            dev = parts[-1].device
            fetched = torch.cat([p.to(dev) for p in parts]).cpu().tolist()
        sums = {**self._sums, **dict(zip(on_device, fetched))}
        values = {k: float(v) / self._counts[k] for k, v in sums.items()}
        if self._grad_norms is not None:
            values.update({f"grad_norm/{n}": v for n, v in zip(self._grad_names, fetched[len(on_device):])})
        self._sums, self._counts = {}, {}
        self._grad_norms, self._grad_names = None, []
        return values

    def _layer_stats(self) -> tuple[dict[str, LayerStats], dict[str, Histogram], dict[str, float]]:
        d = dist()
        reduce = (lambda t: d.all_reduce(t, op=d.ReduceOp.SUM)) if d is not None else None
        raw = self.probes.flush(self.config.probe.tau, reduce=reduce)
        layers = {name: LayerStats.from_probe(name, s) for name, s in raw.items()}
        edges = tuple(self.probes.edges()) if self.probes.histograms else ()
        hists = {f"pre/{name}": Histogram(f"pre/{name}", edges, s["hist"])
                 for name, s in raw.items() if self.probes.histograms and s["sampled_batches"]}
        values: dict[str, float] = {}
        for name, s in layers.items():
            if s.dead is not None:
                values[f"dead/{name}"] = s.dead
            if s.revived is not None:
                values[f"revived/{name}"] = s.revived
            values[f"dormant/{name}"] = s.dormant
            if s.zero_frac is not None:
                values[f"zero_frac/{name}"] = s.zero_frac
        return layers, hists, values

    def flush(self, step: int | None = None) -> FlushRecord:
        """Fetch and write everything since the last flush (step() calls this every log_every steps)."""
        t0 = time.perf_counter()
        step = self.step_count if step is None else int(step)
        self.last_flush_step = step
        if self._grad_norms is None and self.config.probe.grads:  # no optimizer hook fired (a hand-written update)
            self._grad_names, self._grad_norms = grad_norms(self.model.named_parameters())
        layers, hists, values = self._layer_stats()
        scalars = {**self._loop_scalars(), **values}
        now = time.perf_counter()
        busy = self._busy + (now - t0) + (self.probes.hook_seconds - self._hook_base)
        scalars["watch/overhead_pct"] = 100.0 * busy / max(now - self._t_flush, 1e-9)
        record = FlushRecord(step=step, epoch=self.epoch, wall_time=time.time(), scalars=scalars, layers=layers,
                             histograms=hists, events=self._new_events)
        self.plugins.call("before_write", self, record)
        self._write(record)
        window = self.config.probe.window
        if window is None or (isinstance(window, int) and step - self._window_start >= window):
            self.end_window()
        self.last = scalars
        self.plugins.call("on_flush", self, record)
        self._new_events = []
        self._hook_base = self.probes.hook_seconds
        self._t_flush = now
        self._busy = time.perf_counter() - now  # writing and the plug-ins count towards the next interval
        return record

    def _write(self, record: FlushRecord):
        if self.store is None:
            return
        self.store.check()
        hists = [(key, h.edges, h.counts) for key, h in record.histograms.items()]
        units = []
        for name, s in record.layers.items():
            if s.activity is not None:
                units.append((name, s.activity))
            units.append((f"score/{name}", s.score))
        self.store.log_flush(record.step, record.scalars, hists, units, epoch=record.epoch)

    def add_event(self, kind: str, *, step: int | None = None, layer: str | None = None, units: int | None = None,
                  reason: str | None = None, command_id: str | None = None, command_state: str | None = None,
                  **details) -> Event:
        """Write an event row (drawn as a marker on every chart of the run). `command_id` and
        `command_state` close a command of the control path in the same transaction."""
        ev = Event(step=self.step_count if step is None else int(step), kind=kind, layer=layer, units=units,
                   reason=reason, command_id=command_id, details=details)
        self.events.append(ev)
        self._new_events.append(ev)
        if self.store is not None:
            self.store.log_event(ev.step, kind, layer, units, reason, command_id, details, command_state=command_state)
        return ev

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
        if keys:
            step = self.step_count if step is None else int(step)
            epoch = self.epoch if epoch is None else epoch
            written = dict(zip(keys, map(float, vals)))
            if self.store is not None:
                self.store.log_scalars(step, written, epoch=epoch)
            self.plugins.call("on_log", self, step, written, epoch)  # e.g. the tracker sinks

    def paused(self):
        """Forward passes inside do not count (model.eval() passes never count anyway)."""
        return self.probes.paused()

    @contextlib.contextmanager
    def detached(self):
        """No hooks at all inside (zero cost; bench/watch_overhead.py times this against watching)."""
        self.remove_hooks()
        try:
            yield
        finally:
            if not self.closed:
                self._attach()

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
            try:
                self.plugins.call("on_close", self, state)
            finally:
                if self.store is not None:
                    self.store.set_status(state, reason)
                    self.store.close()

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


def watch(model: nn.Module, run: str | None = None, log_every: int = 50, *, plugins: list | tuple = (),
          optimizer=None, check=None, verbose: bool = True, sinks=None, dormancy=None,
          budget: float | None = DEFAULT_BUDGET, **settings) -> Watcher:
    """Hook `model` and start a run. Keywords: those of ProbeConfig and StoreConfig (config.py),
    recycle_every / recycle_tau / recycle_mode / recycle_pairs / recycle_by / recycle_convention
    (RecycleConfig), `optimizer` (whose state a recycle resets), `check(values, step)` (raise to stop
    the run: guards.py), `plugins` (added after the default ones), `verbose` (print the watch table),
    `sinks` (trackers that get every flush too: ["tensorboard:DIR", "mlflow", "wandb"], core/sinks/),
    `dormancy` (True, or a dict of DormancySettings: every dormancy definition side by side,
    docs/dormancy.md; added by itself when recycle_by or the cbp convention needs it), `budget` (the
    share of the step time the watcher may take before it samples less, default 0.03; None: no
    limit; budget.py)."""
    budget = check_budget(budget)
    probe, store, recycle, rest = split_kwargs({"run": run, "log_every": log_every, **settings})
    if rest:
        raise TypeError(f"watch() got unexpected keyword argument(s) {', '.join(sorted(rest))}; "
                        f"it takes {', '.join(known_kwargs() + ['budget', 'check', 'dormancy', 'optimizer', 'plugins', 'sinks', 'verbose'])}")
    plugins = list(plugins)
    from .dormancy_plugin import DormancyPlugin

    needs = recycle.by not in (None, "dead", "redo") or recycle.convention == "cbp"
    if (dormancy or needs) and not any(isinstance(p, DormancyPlugin) for p in plugins):
        plugins.append(DormancyPlugin(**(dormancy if isinstance(dormancy, dict) else {})))
    return Watcher(model, probe, store, plugins=default_plugins(recycle, optimizer, check, budget) + plugins
                   + parse_sinks(sinks), verbose=verbose)


__all__ = ["Watcher", "default_plugins", "find_layers", "format_table", "watch"]
