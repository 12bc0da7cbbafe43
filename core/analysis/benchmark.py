"""`actlab bench <what>`: micro-benchmarks. `bench activations` times every scalar activation.

Elementwise activations are memory-bound, so every column is a share of the bandwidth limit, which
a plain copy (`clone`) of the same tensor measures: its forward moves 2 tensors' bytes (read x,
write y) in `t_copy`. Each figure counts the bytes an activation must move and divides by the time
the copy would need for them:
- forward (`pct_of_copy`): reads x, writes y: 2 tensors, so 100 * t_copy / t_forward;
- forward+backward (`pct_of_bandwidth_fwd_bwd`): the forward's 2 plus the backward's 3 (read the
  incoming gradient and the saved input, write the input's gradient): 5 tensors, so
  100 * (5 / 2) * t_copy / t_forward_backward.
Near 100% means the kernels run at memory bandwidth. The copy's own backward passes the gradient
through without a kernel, so it has no backward figure (the old "fwd+bwd vs copy's fwd+bwd" ratio
read ReLU as 38% of copy on an H200 for that reason).
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable

import torch
from torch import nn

from .. import paths
from ..errors import UserError
from ..activations import create_act_layer, names as activation_names

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class Clone(nn.Module):
    def forward(self, x):
        return x.clone()


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose cpu or cuda")
    return torch.device(name)


def _timer(device: torch.device, fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median seconds per call. Warm-up first: the first calls pay for allocation, kernel selection
    and (with --compile) compilation, easily 10x a steady-state call. Each repeat runs enough calls
    to last ~1 ms, so timer resolution and launch jitter do not dominate small tensors."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(max(warmup, 1)):
        fn()
    # Best of three for the calibration: one preempted call would otherwise set inner = 1.
    one = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        one.append(time.perf_counter() - t0)
    inner = max(1, min(1000, int(1e-3 / max(min(one), 1e-7))))
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            # Events time the GPU stream itself, not the host's queueing of kernels.
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def _time_module(module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, repeats: int, warmup: int) -> tuple[float, float]:
    params = [p for p in module.parameters() if p.requires_grad]

    def forward():
        with torch.no_grad():
            return module(x)

    def forward_backward():
        y = module(x)
        # autograd.grad rather than .backward(): nothing accumulates between repeats.
        return torch.autograd.grad(y, [x, *params], grad_out)

    return (_timer(x.device, forward, repeats, warmup), _timer(x.device, forward_backward, repeats, warmup))


def bench_activations(device: str = "cpu", numel: int = 1 << 24, dtype: str = "float32", compile: bool = False,
                      repeats: int = 20, warmup: int = 5, only: list[str] | None = None, threads: int | None = None,
                      progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Forward and forward+backward time of each scalar activation on one 1-D tensor of `numel`
    elements, with `clone` first as the bandwidth reference."""
    dev = _device(device)
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    if not 1 <= numel <= 1 << 31:
        raise UserError("--numel must be in [1, 2**31]")
    if repeats < 1 or warmup < 0:
        raise UserError("--repeats must be >= 1 and --warmup >= 0")
    chosen = only or activation_names(vector=False)
    unknown = [n for n in chosen if n not in activation_names(vector=False)]
    if unknown:
        raise UserError(f"not a scalar activation: {unknown[0]!r}; choose from {', '.join(activation_names(vector=False))}")
    if threads is not None:
        if threads < 1:
            raise UserError("--threads must be >= 1")
        torch.set_num_threads(threads)
    torch_dtype = DTYPES[dtype]
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(numel, generator=gen, device=dev, dtype=torch_dtype).requires_grad_(True)
    grad_out = torch.randn(numel, generator=gen, device=dev, dtype=torch_dtype)
    bytes_moved = 2 * numel * x.element_size()  # read x, write y
    rows = []
    todo = ["clone", *chosen]
    for i, name in enumerate(todo):
        if progress:
            progress(i, len(todo), name)
        module = (Clone() if name == "clone" else create_act_layer(name)).to(dev, torch_dtype)
        if compile:
            module = _compile(module, dev, torch_dtype)
        fwd, fwd_bwd = _time_module(module, x, grad_out, repeats, warmup)
        rows.append({"name": name, "forward_ms": fwd * 1e3, "forward_backward_ms": fwd_bwd * 1e3,
                     "elements_per_s": numel / fwd, "gb_per_s": bytes_moved / fwd / 1e9})
    add_bandwidth(rows)
    if progress:
        progress(len(todo), len(todo), "done")
    return {"meta": _meta(dev, numel, dtype, compile, repeats, warmup), "results": rows}


FWD_TENSORS = 2  # read x, write y
FWD_BWD_TENSORS = 5  # the forward's 2, then read the gradient and the saved input, write one gradient


def add_bandwidth(rows: list[dict]) -> list[dict]:
    """Set each row's share of the bandwidth limit from its times (module docstring), in place.
    Works on results written before these columns existed too: they are derived from the times."""
    copy = next((r for r in rows if r.get("name") == "clone"), None)
    if copy is None:
        raise UserError("a benchmark result needs its `clone` row: it is the bandwidth reference")
    t_copy = copy["forward_ms"]
    for r in rows:
        r.pop("pct_of_copy_backward", None)  # the old ratio of fwd+bwd times, not a bandwidth share
        r["pct_of_copy"] = 100 * t_copy / r["forward_ms"]
        r["pct_of_bandwidth_fwd_bwd"] = (None if r is copy else
                                         100 * (FWD_BWD_TENSORS / FWD_TENSORS) * t_copy / r["forward_backward_ms"])
    return rows


def _compile(module: nn.Module, dev: torch.device, dtype: torch.dtype) -> nn.Module:
    # Modules share dynamo's wrappers; without a reset, 18 modules x 2 grad modes hit its recompile limit.
    torch._dynamo.reset()
    try:
        compiled = torch.compile(module)
        # Compilation is lazy; force it now so a missing compiler is a clear error, not a mid-run trace.
        compiled(torch.zeros(8, device=dev, dtype=dtype))
        return compiled
    except Exception as e:  # inductor raises many types (missing C compiler, triton, ...)
        raise UserError(f"--compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None


def _meta(dev, numel, dtype, compile, repeats, warmup) -> dict:
    return {
        "device": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numel": numel, "dtype": dtype, "compile": compile, "repeats": repeats, "warmup": warmup,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def list_results(directory: Path | None = None) -> list[Path]:
    """Activation results. Other result files here are skipped: other benches' JSON (bench/crash_resume.py,
    a `summary` and no `results`) and claims/grid results (a `kind` field). A broken file is still
    listed so the page can say what is wrong with it."""
    out = []
    for p in sorted(Path(directory or paths.results_dir()).glob("*.json")):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            out.append(p)
            continue
        other_bench = isinstance(data, dict) and "results" not in data and isinstance(data.get("summary"), dict)
        if not (other_bench or (isinstance(data, dict) and "kind" in data)):
            out.append(p)
    return out


def load_result(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read benchmark result {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list) or "meta" not in data:
        raise UserError(f"{path} is not a `bench activations --json` result")
    try:
        add_bandwidth(data["results"])
    except (KeyError, TypeError, ZeroDivisionError) as e:
        raise UserError(f"{path}: a result row lacks its times ({type(e).__name__}: {e})") from None
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return data
