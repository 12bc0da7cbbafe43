"""Device-side reductions behind the probes (core/watcher/probes.py owns what they mean).

Each reads the activation in its own dtype with fp32 accumulators (never a full-size fp32 copy),
returns tensors on the activation's device and never reads anything back to the host, so a
training step never waits on the GPU because of them.

- `abs_sum`: per-unit sum of |y| (optionally weighted by a padding mask): the window sums behind
  dormant/ and ReLU's dead/: the one reduction on every training forward of a ReLU-like layer
  (on the sampled batches for the others).
- `unit_sum`: the per-unit fp32 sum under it, also used for the sampled batches' counts. Those
  counts are sums of 0/1 float indicators (`indicator`, `nonzero`), not comparisons and boolean
  reductions: on the CPU a float pass runs about 5x faster than a comparison, and a boolean
  reduction over the outer dims is as slow again. Sums of 0/1 in fp32 are exact below 2**24.
- `row_sum_into`: a ReLU's per-unit sum as one BLAS product (`ones @ y`, added in place): the
  probes' inlined hook path on the CPU.
- `Histogram`: a fixed-size systematic subsample of the elements (a strided view, so nothing is
  gathered by index and no global atomics fight over a few bins), binned with `torch.histc` on
  CUDA (shared-memory binning) and `torch.bincount` on the CPU, scaled back to element counts;
  `take` copies a batch's subsample and `bin` bins several at once (the probes' flush).
- `Fused`: the same window sum as one `torch.compile`d kernel (GPU default: one read of the
  activation where eager takes two passes); any compile failure falls back to eager, once.
"""
from __future__ import annotations

import math
import random
import warnings

import torch

from ..errors import UserError

_BUF_SLOTS = 8


class AbsBuffers:
    """|y| into a reused buffer on the CPU: a fresh activation-sized tensor per call costs more in
    page faults than the abs itself (CUDA's caching allocator makes this moot there)."""

    def __init__(self):
        self._bufs: dict = {}

    def abs(self, y: torch.Tensor) -> torch.Tensor:
        return y.abs() if y.device.type != "cpu" else torch.abs(y, out=self._like(y))

    def sign(self, y: torch.Tensor) -> torch.Tensor:
        return y.sign() if y.device.type != "cpu" else torch.sign(y, out=self._like(y))

    def _like(self, y: torch.Tensor) -> torch.Tensor:
        key = (tuple(y.shape), y.dtype)
        buf = self._bufs.get(key)
        if buf is None:
            if len(self._bufs) >= _BUF_SLOTS:
                self._bufs.clear()
            buf = self._bufs[key] = torch.empty(y.shape, dtype=y.dtype, device=y.device)
        return buf


# Sets grad mode without the context manager: `with torch.no_grad()` costs ~7 us inside a training
# loop (Python-level enter and exit), a hook or w.step() several times its own work.
set_grad = torch._C._set_grad_enabled


def row_sum_into(acc: torch.Tensor | None, ones: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """`acc` += the column sums of the 2-D fp32 `y2` as ONE BLAS product `ones @ y2` (`ones`: (1, rows));
    a new (1, cols) tensor when `acc` is None. Call with grad mode off: `y2` may require grad.
    Inside a training loop every op pays several microseconds of dispatch, so one op where a sum
    and an add were two is most of the hook's saving."""
    if acc is None:
        return torch.mm(ones, y2)
    (acc if acc.dim() == 2 else acc.view(1, -1)).addmm_(ones, y2)
    return acc


def unit_sum(a: torch.Tensor, dims: tuple[int, ...], units: int, w: torch.Tensor | None = None) -> torch.Tensor:
    """Per-unit sum of `a` over `dims` (fp32). `w`: (N, T) token weights for a 3-D `a` (padding)."""
    if w is None:
        return a.sum(dims, dtype=torch.float32)
    if a.dtype == torch.float32 and a.device.type == "cpu" and a.is_contiguous():
        # One BLAS matrix-vector product over the tokens reads `a` once and applies the weights.
        return torch.mv(a.view(-1, units).t(), w.reshape(-1).to(a.dtype))
    return (a * w.unsqueeze(-1).to(a.dtype)).sum(dims, dtype=torch.float32)


def abs_sum(y: torch.Tensor, dims: tuple[int, ...], units: int, nonneg: bool, bufs: AbsBuffers,
            w: torch.Tensor | None = None) -> torch.Tensor:
    """Per-unit sum of |y| over `dims` (fp32). `nonneg`: y is already >= 0 (ReLU output). `w`: (N, T)
    token weights for a 3-D y (padding), in y's dtype."""
    return unit_sum(y if nonneg else bufs.abs(y), dims, units, w)


def _no_nan(a: torch.Tensor) -> torch.Tensor:
    # torch.sign gives 0 for NaN on the CPU (tests/test_reductions.py checks it); elsewhere, make it so.
    return a if a.device.type == "cpu" else torch.nan_to_num_(a, nan=0.0)


def nonzero(a: torch.Tensor) -> torch.Tensor:
    """`a` (>= 0, and ours to overwrite) as 1 where it is > 0, else 0. NaN reads as 0: a NaN
    output is not active."""
    return _no_nan(a.sign_())


def indicator(y: torch.Tensor, bufs: AbsBuffers, nonneg: bool = False) -> torch.Tensor:
    """1 where y != 0 (and not NaN), else 0, in y's dtype, in a reused buffer. `nonneg`: y >= 0."""
    return _no_nan(bufs.sign(y)) if nonneg else nonzero(bufs.abs(y))


def _memory_order(x: torch.Tensor) -> torch.Tensor | None:
    """x as a flat view in memory order (a conv map in channels_last is not contiguous in its own
    dim order), or None when its storage is not dense."""
    if x.is_contiguous():
        return x.view(-1)
    order = sorted(range(x.dim()), key=lambda i: (-x.stride(i), -x.shape[i]))
    p = x.permute(order)
    return p.reshape(-1) if p.is_contiguous() else None


class Histogram:
    """Counts of x in `bins` equal bins over `lo, hi`: values outside are clamped into the end bins,
    NaN goes to the last bin (as the page has always drawn them). Tensors with more than `sample`
    elements are binned on a systematic subsample: every `stride`-th element in memory order from
    a random offset, with `stride` coprime to the unit count so every unit is visited; the counts
    are scaled by `stride`, so each bin is an unbiased estimate of the full count."""

    def __init__(self, bins: int, lo: float, hi: float, sample: int = 1 << 14, seed: int = 0):
        if int(sample) < 0:
            raise UserError(f"hist_sample must be >= 0 elements (0: bin every element), got {sample}")
        self.bins, self.lo, self.hi, self.sample = int(bins), float(lo), float(hi), int(sample)
        self._rng = random.Random(seed)  # host-side offsets: the user's torch RNG is never touched

    def _stride(self, n: int, units: int, last: int) -> int:
        s = max(1, n // self.sample)
        while s > 1 and (math.gcd(s, units) != 1 or math.gcd(s, last) != 1):
            s += 1
        return s

    def __call__(self, x: torch.Tensor, units: int, pad: torch.Tensor | None = None) -> torch.Tensor:
        n = x.numel()
        # A padding mask maps element p to token p // F only in a contiguous (N, T, F) layout;
        # any other layout with a mask is binned whole (exact, just not subsampled).
        sub = n > self.sample > 0 and (pad is None or x.is_contiguous())
        flat = _memory_order(x) if sub else None
        if flat is None:
            v, stride = x.reshape(-1), 1
            keep = pad.unsqueeze(-1).expand(x.shape).reshape(-1) if pad is not None else None
        else:
            stride = self._stride(n, units, x.shape[-1] if x.is_contiguous() else units)
            off = self._rng.randrange(stride)
            v = flat[off::stride]
            keep = None
            if pad is not None:  # a 3-D (N, T, F) contiguous tensor: element p is token p // F
                pos = torch.arange(off, n, stride, device=x.device)
                keep = pad.reshape(-1)[pos // x.shape[-1]]
        return self.bin(v.to(torch.float32), keep, stride)  # at most `sample` elements (or a tensor that small)

    def take(self, x: torch.Tensor, units: int) -> tuple[torch.Tensor, int]:
        """The subsample `__call__` would bin (no padding mask), as an fp32 copy, and its stride:
        `bin(torch.cat(vs), None, stride)` later gives the summed counts of all of them. On the
        CPU a batch's binning is ~8 small ops, each a few microseconds of dispatch inside a
        training loop: taking a copy is one, and a flush bins its interval's copies at once."""
        n = x.numel()
        flat = _memory_order(x) if n > self.sample > 0 else None
        if flat is None:
            return x.reshape(-1).to(torch.float32, copy=True), 1
        stride = self._stride(n, units, x.shape[-1] if x.is_contiguous() else units)
        return flat[self._rng.randrange(stride)::stride].to(torch.float32, copy=True), stride

    def bin(self, v: torch.Tensor, keep: torch.Tensor | None, stride: int, own: bool = False,
            method: str | None = None) -> torch.Tensor:
        """Counts of the fp32 `v` (where `keep`), each standing for `stride` elements. `own`: v is
        ours to overwrite (a copy from `take`), else binning works on a copy. `method`: see `_bin`."""
        nan_to_num = v.nan_to_num_ if own else v.nan_to_num
        v = nan_to_num(nan=self.hi, posinf=self.hi, neginf=self.lo)  # from here on, ours to change
        h = self._bin(v, keep, method)
        return h.mul_(stride) if stride != 1 else h

    def _bin(self, v: torch.Tensor, keep: torch.Tensor | None, method: str | None = None) -> torch.Tensor:
        """`method`: "histc" (CUDA: shared-memory binning), "bincount" (the CPU) or "onehot" (CUDA under
        deterministic algorithms, where histc and bincount refuse); None picks by v's device. Every
        method runs on any device, so the CUDA ones are tested on the CPU too."""
        if method is None:
            if v.device.type != "cuda":
                method = "bincount"
            else:
                method = "onehot" if torch.are_deterministic_algorithms_enabled() else "histc"
        if method == "histc":
            v = v.clamp_(self.lo, self.hi)
            if keep is not None:
                v = torch.where(keep, v, self.lo - 1.0)  # histc ignores values outside [lo, hi]
            return torch.histc(v, self.bins, self.lo, self.hi)
        # Clamped to [0, bins - 1] first, the cast's truncation is the floor. int32, not int64:
        # half the bytes written and read, and bincount takes it.
        idx = v.sub_(self.lo).mul_(self.bins / (self.hi - self.lo)).clamp_(0, self.bins - 1).to(torch.int32)
        wts = keep.to(torch.float32) if keep is not None else None
        if method == "bincount":
            return torch.bincount(idx, weights=wts, minlength=self.bins).to(torch.float32)
        if method != "onehot":
            raise ValueError(f"unknown binning method {method!r}: histc, bincount or onehot")
        onehot = (idx.unsqueeze(1) == torch.arange(self.bins, device=v.device)).to(torch.float32)
        return (wts if wts is not None else torch.ones_like(v)) @ onehot


def _fused_abs_sum(y: torch.Tensor, w: torch.Tensor | None, dims: tuple[int, ...], nonneg: bool) -> torch.Tensor:
    a = y if nonneg else y.abs()
    if w is not None:
        a = a * w.unsqueeze(-1)
    return a.sum(dims, dtype=torch.float32)


class Fused:
    """The window sum as a `torch.compile`d function (one fused read of y); `None` from `__call__`
    means "use eager" (compile disabled, or it failed once: warned, never retried)."""

    def __init__(self, mode: str | bool, device_type: str | None = None):
        if mode not in ("auto", True, False, "on", "off"):
            raise UserError(f"fused must be 'auto', True or False, got {mode!r}")
        self.mode = {"on": True, "off": False}.get(mode, mode)
        self._fn = None
        self._broken = False

    def enabled(self, device_type: str) -> bool:
        if self._broken or self.mode is False:
            return False
        return self.mode is True or device_type == "cuda"

    def __call__(self, y, w, dims, nonneg):
        if not self.enabled(y.device.type):
            return None
        try:
            if self._fn is None:
                self._fn = torch.compile(_fused_abs_sum, dynamic=True)
            return self._fn(y, w, dims, nonneg)
        except Exception as e:  # noqa: BLE001 -- a missing compiler, an unsupported dtype: the eager path is exact
            self._broken = True
            warnings.warn(f"actlab watch: torch.compile of the probe reduction failed ({type(e).__name__}: "
                          f"{str(e)[:200]}); using the eager path", RuntimeWarning, stacklevel=2)
            return None
