"""watch() overhead: `python bench/watch_overhead.py [--device auto] [--rounds 15] [--block 30] [--threads 1]`.

One process, two models: the seed MLP (784-512-ReLU-10, Adam, batch 64, bundled MNIST digits on
the device) and a small BERT (BertForSequenceClassification, 2 layers, width 128, FFN 512, GELU,
batch 16 x 64 tokens with padding, AdamW). For each, timed blocks of training steps alternate
between watched (hooks, w.step(loss=...), a flush to a real run store every --log-every steps)
and unwatched (`w.detached()`: no hook at all). Prints median step times and lines containing
`ratio` (watched / unwatched; target <= 1.05), plus the watcher's own `watch/overhead_pct` as
it recorded it in the store. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch
import torch.nn.functional as F

from actlab.store.runs import RunStore
from actlab.train.loop import pick_device
from actlab.watch import watch


def mlp_case(device, batch_size):
    from actlab.models.data import load_mnist
    from actlab.models.mlp import MLP

    d = load_mnist("bundled", device=device)
    x_all, y_all = d["x_train"], d["y_train"]
    model = MLP().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        idx = torch.randint(0, len(x_all), (batch_size,), device=device)
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()
    return model, step


def bert_case(device, batch_size=16, seq=64):
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=seq, num_labels=2)
    model = BertForSequenceClassification(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 1000, (64, batch_size, seq), generator=g).to(device)
    lengths = torch.randint(seq // 2, seq + 1, (64, batch_size), generator=g)
    mask = (torch.arange(seq)[None, None, :] < lengths[..., None]).long().to(device)
    labels = torch.randint(0, 2, (64, batch_size), generator=g).to(device)
    i = 0

    def step():
        nonlocal i
        k = i % 64
        i += 1
        out = model(input_ids=ids[k], attention_mask=mask[k], labels=labels[k])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        return out.loss.detach()
    return model, step


def measure(name, model, step, args, device, runs_dir):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    w = watch(model, run=f"bench-{name}", log_every=args.log_every, runs_dir=runs_dir, verbose=False)

    def block(watched: bool) -> float:
        sync()
        t = time.perf_counter()
        if watched:
            for _ in range(args.block):
                w.step(loss=step())
        else:
            with w.detached():
                for _ in range(args.block):
                    step()
        sync()
        return (time.perf_counter() - t) / args.block

    for _ in range(args.warmup):
        block(True), block(False)
    on, off = [], []
    for r in range(args.rounds):
        # Alternate which goes first so drift (thermal, other load) hits both equally.
        for watched in ((True, False) if r % 2 == 0 else (False, True)):
            (on if watched else off).append(block(watched))
    w.close()
    df, _ = RunStore(runs_dir).open(f"bench-{name}").scalars(keys=["watch/overhead_pct"])
    m_on, m_off = statistics.median(on), statistics.median(off)
    per_round = statistics.median(a / b for a, b in zip(on, off))
    print(f"{name}: median step watched {m_on * 1e3:.3f} ms, unwatched {m_off * 1e3:.3f} ms")
    print(f"{name}: ratio watched/unwatched = {m_on / m_off:.3f} (target <= 1.05); median per-round ratio = {per_round:.3f}; "
          f"watch/overhead_pct (median of {len(df)} flushes) = {df['value'].median():.2f}%")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both arms (0 = torch default)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed watched/unwatched block pairs first")
    ap.add_argument("--block", type=int, default=30, help="steps per timed block")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--only", default="mlp,bert")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    runs_dir = tempfile.mkdtemp()
    print(f"device={device} threads={torch.get_num_threads()} block={args.block} rounds={args.rounds} "
          f"log_every={args.log_every}")
    cases = {"mlp": lambda: mlp_case(device, 64), "bert": lambda: bert_case(device)}
    for name in args.only.split(","):
        model, step = cases[name]()
        measure(name, model, step, args, device, runs_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
