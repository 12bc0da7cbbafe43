"""Probe overhead: `python bench/monitor_overhead.py [--device auto] [--rounds 31] [--block 40] [--threads 1]`.

One process, the MNIST trainer's step (on-device batches, 784-512-ReLU-10, Adam, batch 64), run in
alternating blocks with probes on and off. Probes "on" includes the hooks, gradient norms and a
flush to a real run store every --log-every steps, as in training. Prints the median step time of
each and the ratio on / off (target <= 1.05 on CPU and GPU), plus the median of the per-round
ratios (each round's on and off blocks are adjacent, so load drift largely cancels). Both arms run
with the same torch thread count (--threads, default 1: on a small shared CPU box intra-op threads
add scheduling noise to both arms; 0 keeps torch's default). Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.data import load_mnist  # noqa: E402
from core.models import MLP  # noqa: E402
from core.probes import ActivationProbes  # noqa: E402
from core.runs import RunStore  # noqa: E402
from core.train.loop import pick_device  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both arms (0 = torch default)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed on/off block pairs first")
    ap.add_argument("--block", type=int, default=40, help="steps per timed block")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    d = load_mnist("bundled", device=device)
    x_all, y_all = d["x_train"], d["y_train"]
    model = MLP().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    probes = ActivationProbes(model)
    tmp = tempfile.mkdtemp()
    writer = RunStore(tmp).create("bench", {})
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step = 0
    loss_sum = torch.zeros((), device=device)

    def block(enabled: bool) -> float:
        nonlocal step
        probes.enabled = enabled
        sync()
        t = time.perf_counter()
        for _ in range(args.block):
            idx = torch.randint(0, len(x_all), (args.batch_size,), device=device)
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if (step + 1) % args.log_every == 0:  # as the trainer does: norms only before a flush
                probes.after_backward(model)
            opt.step()
            loss_sum.add_(loss.detach())
            step += 1
            if step % args.log_every == 0:
                loss_sum.cpu()  # the trainer's one fetch per interval happens in both modes
                if enabled:
                    probes.flush(writer, step, 0.0)
        sync()
        return (time.perf_counter() - t) / args.block

    for _ in range(args.warmup):
        block(True), block(False)
    on, off = [], []
    for r in range(args.rounds):
        # Alternate which goes first so drift (thermal, other load) hits both equally.
        for enabled in ((True, False) if r % 2 == 0 else (False, True)):
            (on if enabled else off).append(block(enabled))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} block={args.block} "
          f"rounds={args.rounds} log_every={args.log_every}")
    print(f"median step: probes on {m_on * 1e3:.3f} ms, off {m_off * 1e3:.3f} ms")
    per_round = statistics.median(a / b for a, b in zip(on, off))
    print(f"overhead ratio on/off = {m_on / m_off:.3f} (target <= 1.05); median per-round ratio = {per_round:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
