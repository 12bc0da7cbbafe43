"""Activation probes: forward hooks that keep per-layer statistics ON the device.

`core.watch` finds the layers and drives this; a layer is a `Target` (module, registry activation,
whether `dead/` is defined for it, and whether the module's output is the activation's output or
its input, as for a `Linear` that feeds an `F.relu` in `forward`).

    probes = ActivationProbes(targets)
    ... training forwards (train mode) accumulate on the device, no host sync ...
    out = probes.flush()           # every log_every steps: ONE device->host copy (after a DDP all-reduce)
    probes.end_window()            # close the window (the next flush starts fresh sums and masks)

Definitions (README, "Dead and dormant units"):
- a unit is **dead over a window** when |f'(pre-activation)| <= eps for EVERY sample in the window.
  Only for layers whose class we know exactly (f' is then the module's own, or the registry's).
- a unit is **tau-dormant** (Sokar et al., ICML 2023) when its mean |output| over the window,
  divided by the layer's mean of that figure over its units, is at most tau.
- zero fraction: the share of outputs exactly 0 (sparsity, not deadness).

Unit axis: the last dimension for (N, F) and (N, T, F) tensors (every token is a sample), the
channel axis (dim 1) for 4-D and 5-D conv maps. With a padding mask (N, T) set by the watcher,
padded tokens of 3-D tensors count for nothing.

Cost vs exactness: for piecewise-linear activations with a flat zone (ReLU, ReLU6, Hardtanh,
...), the window sums behind dead/ and dormant/ (per-unit sum of |output|, sample count, the
"ever alive" mask) are updated on EVERY training forward, because a unit alive on one sample in
a thousand is not dead; for ReLU the alive mask is read off the |output| sum for free. Every
other figure, and dormant/ and dead/ of every other layer (GELU, SiLU, Tanh, ...: dead/ there is
the autograd f' test, a full pass of its own), is measured on one batch in `stats_every` (the 1st,
(k+1)-th, ... of each flush interval; ReDo computes tau-dormancy on a batch, too): the
histogram of the pre-activation, per-unit activity, the zero fraction and the autograd f' test.
On the other batches such a layer's hook only counts; `window_samples` says how many samples a
window's figures rest on. The histogram of a large activation
bins a fixed-size systematic subsample of its elements (`hist_sample`, scaled back to element
counts), copied on the sampled batch and binned at the flush for the whole interval at once (with a
padding mask, binned at once); the reductions themselves live in core/watcher/reductions.py.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch import nn

from . import window
from .probe_layer import Target, _Layer, _unit_dims
from .reductions import AbsBuffers, Fused, Histogram, abs_sum, indicator, nonzero, row_sum_into, set_grad, unit_sum

__all__ = ["ActivationProbes", "Target", "grad_norms"]

_MAX_STAGED = 8  # histogram subsamples held per layer before they are binned (memory: 8 x 64 KB)

_graph_task = getattr(torch._C, "_current_graph_task_id", None)


def _in_backward() -> bool:
    """True inside the autograd engine, where gradient checkpointing re-runs forwards."""
    return _graph_task is not None and _graph_task() != -1


@contextlib.contextmanager
def _own_graph():
    """The f' test's own small graph, with identity saved-tensor hooks: nothing of ours joins a
    checkpointed region's saved tensors (its recompute must match them)."""
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        yield


class ActivationProbes:
    def __init__(self, targets: list[Target], eps: float = 0.0, bins: int = 64, hist_range=(-6.0, 6.0),
                 stats_every: int = 16, histograms: bool = True, hist_sample: int = 1 << 14,
                 fused: str | bool = "auto"):
        self.stats_every = max(1, int(stats_every))
        self.eps, self.bins, self.hist_range = float(eps), int(bins), (float(hist_range[0]), float(hist_range[1]))
        self.histograms = bool(histograms)
        self.enabled = True
        self.mask: torch.Tensor | None = None  # (N, T) padding mask of the current forward, set by the watcher
        self._exact: dict[str, torch.Tensor] | None = None
        self.layers: dict[str, _Layer] = {t.name: _Layer(t, self.eps) for t in targets}
        self._handles = []
        self.attach()
        self.hook_seconds = 0.0  # host time spent inside the hooks (the watcher reports its share)
        self._bufs = AbsBuffers()
        self._hist = Histogram(self.bins, *self.hist_range, sample=hist_sample)
        self._fused = Fused(fused)
        self._pad_cache: tuple = (None, {})
        self._zero_cache: dict = {}
        self._edges: tuple | None = None

    # ---------------------------------------------------------------- hot path (no host syncs)
    def _hook(self, name: str):
        L = self.layers[name]
        clock, compiling, grad_on = time.perf_counter, torch.compiler.is_compiling, torch.is_grad_enabled

        def hook(module, inputs, output):
            if compiling():
                return eager(module, inputs, output)
            fast = L.fast
            # The common call, inlined: a ReLU's own fp32 output of the shape seen before, nothing
            # else set. Inside a training loop the step's own work leaves the caches cold, and the
            # hook's Python cost more than its one BLAS product did, so this path is only its checks.
            if (fast is not None and self.enabled and module.training and self._exact is None and self.mask is None
                    and isinstance(output, torch.Tensor) and output.shape == fast[0] and output.is_contiguous()
                    and not _in_backward()):
                t0 = clock()
                y2 = output if fast[3] else output.view(fast[2], -1)
                grad = grad_on()
                set_grad(False)  # our sums must not join the graph; a no_grad() context costs ~7 us here
                try:
                    L.d_sum = row_sum_into(L.d_sum, fast[1], y2)
                    if L.calls % self.stats_every == 0:
                        self._sample_relu(L, inputs, y2, fast)
                finally:
                    set_grad(grad)
                L.d_count_host += fast[2]
                L.calls += 1
                self.hook_seconds += clock() - t0
                return None
            return self._call(L, module, inputs, output)
        # Under torch.compile the hook runs eagerly (a graph break), never traced: tracing would
        # specialise on the sampling counter and recompile at every step. Only then: a disabled
        # function costs ~9 us a call in eager mode too, where is_compiling() is a flag read.
        eager = torch.compiler.disable(lambda module, inputs, output: self._call(L, module, inputs, output))
        return hook

    def _call(self, L: _Layer, module, inputs, output):
        """Every call the inlined path in `_hook` does not take."""
        if self._exact is None and (not self.enabled or not module.training):
            return
        if _in_backward():
            return  # a checkpoint's recompute: the forward already counted this batch
        t0 = time.perf_counter()
        if not L.every and self._exact is None and L.calls % self.stats_every:
            L.calls += 1  # not sampled, and nothing of this layer needs every forward: a counter
            self.hook_seconds += time.perf_counter() - t0
            return
        if L.t.role == "pre":
            x = output.detach()
            y = None
        else:
            x = inputs[0].detach() if inputs else None
            y = output.detach() if isinstance(output, torch.Tensor) else None
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 1:
            if x.dim() == 1:
                x = x.unsqueeze(0)
                y = y.unsqueeze(0) if y is not None else None
            # x and y are detached: the reductions build no graph, so only the f' test (its own
            # small graph) needs _own_graph, in _alive_elem; a context per hook call cost ~5 us.
            if self._exact is not None:
                self._record_exact(L, x)
            else:
                self._record(L, x, y)
                L.fast = self._fast_path(L, x, y)
        self.hook_seconds += time.perf_counter() - t0

    def _fast_path(self, L: _Layer, x: torch.Tensor, y: torch.Tensor | None):
        """(shape, ones row, rows, 2-D?) when the next calls of this shape may take the hook's inlined
        path: a ReLU module's own fp32 output on the CPU, contiguous, units last, no mask, eager sums."""
        if (L.t.role != "act" or y is None or y.shape != x.shape or y.dim() not in (2, 3) or L.rule != "sum"
                or y.dtype != torch.float32 or y.device.type != "cpu" or not y.is_contiguous()
                or self._pad_mask(x) is not None or self._fused.enabled(y.device.type) or y.shape[-1] != L.units):
            return None
        rows = y.numel() // L.units
        return y.shape, torch.ones(1, rows, dtype=y.dtype), rows, y.dim() == 2

    def _sample_relu(self, L: _Layer, inputs, y2: torch.Tensor, fast):
        """A sampled batch on the inlined path (grad mode off): the per-unit activity as a second
        product (ReLU: alive <=> y != 0, so the 0/1 sign is it; the flush derives the zeros), and
        the histogram's subsample (binned at the flush)."""
        L.active = row_sum_into(L.active, fast[1], self._bufs.sign(y2))
        if self.histograms:
            self._stage_hist(L, inputs[0] if inputs else y2, L.units)
        L.s_count_host += fast[2]
        L.sampled += 1

    def _stage_hist(self, L: _Layer, x: torch.Tensor, units: int):
        L.staged.append(self._hist.take(x, units))
        if len(L.staged) >= _MAX_STAGED:
            self._fold_hist(L)

    def _fold_hist(self, L: _Layer):
        """Bin the staged subsamples into L.hist: one binning per stride (one in practice)."""
        by_stride: dict[int, list] = {}
        for v, stride in L.staged:
            by_stride.setdefault(stride, []).append(v)
        L.staged = []
        for stride, vs in by_stride.items():
            h = self._hist.bin(vs[0] if len(vs) == 1 else torch.cat(vs), None, stride, own=True)
            L.hist = h if L.hist is None else L.hist.add_(h)

    def _alive_elem(self, L: _Layer, x: torch.Tensor) -> torch.Tensor:
        """Elementwise "f' > eps" at the pre-activation x (bool, x's shape)."""
        if L.rule == "flat":
            return L.flat(x)
        if L.rule in ("sum",):
            return x > 0
        if L.rule == "always":
            return torch.ones_like(x, dtype=torch.bool)
        return self._fprime(L, x).abs() > self.eps

    def _fprime(self, L: _Layer, x: torch.Tensor) -> torch.Tensor:
        """f' by autograd in x's own dtype (fp16 is widened: its f' underflows to 0 where fp32's does
        not, which would call live units dead); only on sampled batches. A fresh tensor."""
        with _own_graph():
            xx = (x.float() if x.dtype == torch.float16 else x.detach()).requires_grad_(True)
            (g,) = torch.autograd.grad(L.fn(xx).sum(), xx)
        return g

    def _alive_ind(self, L: _Layer, x: torch.Tensor) -> torch.Tensor:
        """"f' > eps" as 0/1 in a float dtype, for `unit_sum` (reductions.py says why not a bool)."""
        if L.rule != "autograd":
            return self._alive_elem(L, x).to(x.dtype)
        g = self._fprime(L, x).abs_()
        if self.eps > 0:
            g.sub_(self.eps).clamp_min_(0)
        return nonzero(g)  # a NaN f' is not > eps

    def _pad_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        m = self.mask
        if m is not None and x.dim() == 3 and tuple(m.shape) == tuple(x.shape[:2]):
            return m
        return None

    def _pad_weights(self, pad: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(token weights in `dtype`, token count fp32) of the current mask, made once per forward:
        every hooked layer of that forward shares them."""
        key = (id(pad), dtype)
        if self._pad_cache[0] is not pad:
            self._pad_cache = (pad, {})
        got = self._pad_cache[1].get(key)
        if got is None:
            got = self._pad_cache[1][key] = (pad.to(dtype), pad.sum(dtype=torch.float32))
        return got

    def _record(self, L: _Layer, x: torch.Tensor, y: torch.Tensor | None):
        """The per-unit sum of |output| (one reduction): on every training forward of a ReLU-like
        layer, on the sampled ones of the others (the hook only counts the rest). On a sampled batch
        also: the alive test, per-unit activity, zero count, histogram."""
        axis, dims = _unit_dims(x)
        units = x.shape[axis]
        if L.units is None:
            L.units = units
        elif L.units != units:
            return  # the same module called on another width (shared module): keep the first
        pad = self._pad_mask(x)
        if y is None or y.shape != x.shape:
            with torch.no_grad():  # a parametrised activation (PReLU) would build a graph otherwise
                y = L.fn(x)
        w, n = self._pad_weights(pad, y.dtype) if pad is not None else (None, None)
        relu = L.rule == "sum"  # y = relu(x): already >= 0, and alive <=> y != 0
        s = self._fused(y, w, dims, relu)
        if s is None:
            s = abs_sum(y, dims, units, relu, self._bufs, w)
        if L.d_sum is None:
            L.d_sum = s
        else:
            L.d_sum += s
        if n is None:
            L.d_count_host += x.numel() // units
        else:
            L.d_count = n.clone() if L.d_count is None else L.d_count + n
        sample = L.calls % self.stats_every == 0
        L.calls += 1
        active = None
        if L.rule == "flat" or (L.rule == "autograd" and sample) or (L.rule == "always" and L.d_alive is None):
            active = unit_sum(self._alive_ind(L, x), dims, units, w)
            L.d_alive = active > 0 if L.d_alive is None else (L.d_alive | (active > 0))
        if sample:
            self._record_sample(L, x, y, dims, units, pad, w, n, active)

    def _record_sample(self, L: _Layer, x, y, dims, units, pad, w, n, active):
        """A sampled batch: per-unit activity (the alive test's count), zero fraction, histogram."""
        relu = L.rule == "sum"
        if L.rule in ("sum", None):
            # The count of nonzero outputs is the activity (for ReLU, alive <=> y != 0); the flush
            # takes the zero count from it.
            active, zsum = unit_sum(indicator(y, self._bufs, nonneg=relu), dims, units, w), None
        else:
            nz = unit_sum(indicator(y, self._bufs), dims, units, w)
            zsum = ((n * units if n is not None else float(x.numel())) - nz.sum()).reshape(())
            if active is None:
                active = unit_sum(self._alive_ind(L, x), dims, units, w)
        if self.histograms and pad is None:
            self._stage_hist(L, x, units)
        h = self._hist(x, units, pad) if self.histograms and pad is not None else None
        if n is None:
            L.s_count_host += x.numel() // units
        else:
            L.s_count = n.clone() if L.s_count is None else L.s_count + n
        if h is not None:
            L.hist = h if L.hist is None else L.hist.add_(h)
        if L.active is None:
            L.active, L.zero = active, zsum
        else:
            L.active += active
            if zsum is not None:
                L.zero = zsum if L.zero is None else L.zero + zsum
        L.sampled += 1

    def _record_exact(self, L: _Layer, x: torch.Tensor):
        if L.rule is None:
            return
        _, dims = _unit_dims(x)
        e = self._alive_elem(L, x) if L.rule != "sum" else x > 0
        pad = self._pad_mask(x)
        if pad is not None:
            e = e & pad.unsqueeze(-1)
        a = e.any(dim=dims)
        name = L.t.name
        self._exact[name] = a if name not in self._exact else self._exact[name] | a

    @contextlib.contextmanager
    def paused(self):
        """Forward passes inside (e.g. evaluation in train mode) do not count towards the window."""
        was, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = was

    # ---------------------------------------------------------------- flush (every log_every steps)
    def flush(self, tau: float = 0.1, reduce=None) -> dict:
        """Merge the interval into the window and compute every figure (core/watcher/window.py):
        `reduce(t)` (a DDP all-reduce SUM, in place) merges the ranks first, then ONE device->host
        copy. Returns per-layer host values."""
        for L in self.layers.values():
            if L.staged:
                self._fold_hist(L)
        flat, layout = window.pack(self.layers, self.bins, self._zeros)
        if flat is None:
            return {}
        if reduce is not None:
            reduce(flat)
        out = window.score(self.layers, layout, flat.cpu().numpy().astype(np.float64), self.bins, tau)
        for L in self.layers.values():
            L.reset_interval()
        return out

    def _zeros(self, k: int, dev) -> torch.Tensor:
        key = (k, str(dev))
        z = self._zero_cache.get(key)
        if z is None:
            z = self._zero_cache[key] = torch.zeros(k, device=dev)
        return z

    def end_window(self):
        """Close the window: remember who was dead, start fresh sums and masks. Call right after a flush."""
        for L in self.layers.values():
            if L.w_alive is not None:
                L.prev_dead = ~L.w_alive
            L.reset_window()

    def restart_window(self, name: str):
        """One layer's window starts again (after a recycle, so the next window shows its effect)."""
        L = self.layers[name]
        if L.w_alive is not None:
            L.prev_dead = ~L.w_alive
        L.reset_window()

    def edges(self) -> list[float]:
        if self._edges is None:  # the same every flush
            lo, hi = self.hist_range
            self._edges = tuple(torch.linspace(lo, hi, self.bins + 1, dtype=torch.float64).tolist())
        return list(self._edges)

    @torch.no_grad()
    def exact_dead_count(self, model: nn.Module, batches) -> dict[str, float]:
        """Dataset-level dead fraction in eval mode over `batches` (tensors, or (args, kwargs) pairs):
        {'dead_exact/<layer>': frac}. Does not touch the training window."""
        was_training = model.training
        model.eval()
        self._exact = {}
        try:
            for b in batches:
                if isinstance(b, tuple) and len(b) == 2 and isinstance(b[1], dict):
                    model(*b[0], **b[1])
                else:
                    model(b)
            masks = self._exact
        finally:
            self._exact = None
            model.train(was_training)
        if not masks:
            return {}
        names = list(masks)
        dead = torch.stack([1.0 - masks[n].float().mean() for n in names]).cpu().tolist()
        return {f"dead_exact/{n}": d for n, d in zip(names, dead)}

    def attach(self):
        if not self._handles:
            self._handles = [L.t.module.register_forward_hook(self._hook(n)) for n, L in self.layers.items()]

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []


def grad_norms(named_params) -> tuple[list[str], torch.Tensor | None]:
    """Per-parameter gradient L2 norms, on the device (one foreach kernel)."""
    named = [(n, p.grad) for n, p in named_params if p.grad is not None]
    if not named:
        return [], None
    return [n for n, _ in named], torch.stack(torch._foreach_norm([g.detach().float() for _, g in named]))
