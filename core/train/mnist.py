"""`actlab train mnist`: an MLP on MNIST with live dead-unit probes, nanoGPT style.

The loop reads top to bottom in `train_mnist`. The config is plain values; a checkpoint is a plain
dict (model, optimizer, config, step, epoch). Statistics accumulate on the device and are fetched
once every `log_every` steps: nothing in the step forces a GPU->CPU sync. Probes, scalars and the
run store all go through `core.watch.watch`, the same path a user loop takes.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..activations import resolve_params
from ..errors import UserError
from ..models.data import load_mnist
from ..models.mlp import MLP
from ..watcher import watch
from . import session
from .config import MNIST, OPTIMIZERS, PRESETS  # noqa: F401 (PRESETS, OPTIMIZERS: importable from here too)
from .loop import autocast, check_finite, maybe_compile, pick_device, progress, save_checkpoint, seed_everything

DEFAULTS = MNIST.defaults()  # the one declaration of every option is core/train/config.py


def validate(cfg: dict) -> dict:
    """What the option types cannot say alone: the activation's parameters, plain lists."""
    cfg = MNIST.validate(cfg)
    cfg["act_params"] = resolve_params(cfg["activation"], **(cfg["act_params"] or {}))
    cfg["hidden"] = [int(h) for h in cfg["hidden"]]
    cfg["hist_range"] = [float(v) for v in cfg["hist_range"]]
    return cfg


def _multi_tensor(params: list) -> dict:
    """Adam's default on CPU is the per-parameter `_single_tensor` loop (a few small kernels per
    tensor per step). The fused kernel (CPU and CUDA, float params) measured ~1.5-1.8x faster per
    step on the 2-core box; foreach is the fallback for anything fused does not take."""
    dev = {p.device.type for p in params}
    if len(dev) == 1 and dev <= {"cpu", "cuda"} and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params):
        return {"fused": True}
    return {"foreach": True}


def make_optimizer(cfg: dict, params):
    params = list(params)
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
                               foreach=True)
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"] or 0.01, **_multi_tensor(params))
    return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], **_multi_tensor(params))


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 2048) -> tuple[float, float]:
    was = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size]).float()
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was)
    loss, correct = torch.stack([loss, correct]).cpu().tolist()
    return loss / len(x), correct / len(x)


def train_mnist(config: dict) -> str:
    """Train one run into the run store; returns its name. Also what the ablation runner calls."""
    # CPU threads: one by default. A step's matmuls are ~25 MFLOP, too small for intra-op threads
    # to pay, and on a shared 2-core box OpenMP workers spin against other processes: measured
    # 2.5 ms/step on one thread vs 34 ms/step on two at load 10 (bench/mnist_speed.py notes).
    # Restored afterwards, since the ablation runner and tests call this in-process.
    threads = int(config.get("threads") if config.get("threads") is not None else DEFAULTS["threads"])
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        return _train_mnist(config)
    finally:
        torch.set_num_threads(before)


def _model_and_optimizer(cfg: dict, ckpt: dict | None, device):
    """The MLP and its optimizer, from the checkpoint when resuming or branching. Returns them with
    the step and epoch to start from."""
    model = MLP(784, cfg["hidden"], 10, cfg["activation"], cfg["act_params"], cfg["norm"], cfg["init"],
                cfg["dropout"], cfg["init_bias"]).to(device)
    optimizer = make_optimizer(cfg, model.parameters())
    if ckpt is None:
        return model, optimizer, 0, 0
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # e.g. a branch to an activation with parameters (prelu)
        raise UserError(f"checkpoint does not fit this model: {str(e).splitlines()[0][:200]}") from None
    optimizer.load_state_dict(ckpt["optimizer"])
    for group in optimizer.param_groups:  # the lr asked for now, not the one the checkpoint saved
        group["lr"] = cfg["lr"]
    return model, optimizer, int(ckpt["step"]), int(ckpt["epoch"])


def _train_mnist(config: dict) -> str:  # long: the training loop reads top to bottom in one function (STYLE.md, nanoGPT)
    run = session.start(MNIST, config)
    cfg = validate(run.cfg)
    name = cfg["name"] = cfg["name"] or time.strftime("mnist-%Y%m%d-%H%M%S")
    device = pick_device(cfg["device"])
    seed_everything(cfg["seed"])
    data = load_mnist(cfg["data"], device=device, data_dir=cfg["data_dir"], split_seed=0)
    x_train, y_train = data["x_train"], data["y_train"]
    model, optimizer, step, start_epoch = _model_and_optimizer(cfg, run.ckpt, device)

    # Our trainer is a user of watch() like any other loop. The dead/dormant window is the epoch.
    w = watch(model, run=name, log_every=cfg["log_every"], runs_dir=cfg["runs_dir"], eps=cfg["eps"],
              bins=cfg["hist_bins"], hist_range=cfg["hist_range"], auto=bool(cfg["probes"]), grads=bool(cfg["probes"]),
              window="manual", config={**cfg, **({"branch_of": run.branch_of} if run.branch_of else {})}, kind="mnist",
              resume=bool(cfg["resume"]), start_step=step, verbose=False, optimizer=optimizer,
              recycle_every=int(cfg["recycle_every"]) if cfg["recycle_every"] else None, recycle_tau=cfg["recycle_tau"],
              dormancy=bool(cfg["dormancy"]), recycle_by=cfg["recycle_by"],
              # A NaN loss stops the run before anything of its interval is written.
              check=lambda values, at: check_finite(values.get("loss/train", 0.0), at))
    ckpt_path = Path(cfg["checkpoints_dir"]) / name / "last.pt"
    fmodel = maybe_compile(model, device, cfg["compile"])

    n = len(x_train)
    steps_per_epoch = math.ceil(n / cfg["batch_size"])
    total = cfg["epochs"] * steps_per_epoch
    if cfg["max_steps"]:
        total = min(total, int(cfg["max_steps"]))

    def checkpoint(epoch_mark: int):
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "config": cfg, "step": step, "epoch": epoch_mark})

    seen, t_last = 0, time.perf_counter()
    bar = progress(total, initial=min(step, total), desc=name, disable=not cfg["progress"] or None)
    fault = torch.tensor(float("nan"), device=device)
    epoch = start_epoch
    try:
        with session.lifecycle(w) as end:
            stop = end.stop
            model.train()
            for epoch in range(start_epoch, cfg["epochs"]):
                if step >= total or stop.requested:
                    break
                # One seeded permutation per epoch, so a resumed run replays the same batch order.
                g = torch.Generator(device=device).manual_seed(cfg["seed"] * 1000 + epoch)
                perm = torch.randperm(n, device=device, generator=g)
                first = max(0, step - epoch * steps_per_epoch)
                b = first - 1
                for b in range(first, steps_per_epoch):
                    idx = perm[b * cfg["batch_size"]:(b + 1) * cfg["batch_size"]]
                    x, y = x_train[idx], y_train[idx]
                    with autocast(device, cfg["bf16"]):
                        logits = fmodel(x)
                    loss = F.cross_entropy(logits.float(), y)
                    if cfg["fault_nan_at_step"] is not None and step + 1 >= int(cfg["fault_nan_at_step"]):
                        loss = loss * fault  # fault injection for the reliability tests
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    seen += len(y)
                    bar.update(1)
                    w.epoch = step / steps_per_epoch
                    # Tensors stay on the device; watch fetches them once per log interval.
                    out = w.step(loss=loss.detach(), **{"acc/train": (logits.detach().argmax(1) == y).float().mean(),
                                                        "lr": optimizer.param_groups[0]["lr"]})
                    if out is None and (step >= total or b == steps_per_epoch - 1):
                        out = w.flush()  # the epoch's (or the run's) partial last interval
                    if out is not None:
                        w.log({"samples_per_s": seen / max(time.perf_counter() - t_last, 1e-9)})
                        bar.set_postfix(loss=f"{out.scalars['loss/train']:.3f}", acc=f"{out.scalars['acc/train']:.3f}")
                        seen, t_last = 0, time.perf_counter()
                    if stop.requested or step >= total:
                        break
                epoch_done = not stop.requested and b == steps_per_epoch - 1
                with w.paused():
                    test_loss, test_acc = evaluate(fmodel, data["x_test"], data["y_test"])
                    check_finite(test_loss, step, "test loss")
                    probe_x = data["x_test"][:cfg["probe_size"]]
                    exact = w.probes.exact_dead_count(model, probe_x.split(2048)) if cfg["probes"] else {}
                w.log({"loss/test": test_loss, "acc/test": test_acc, **exact}, epoch=step / steps_per_epoch)
                if epoch_done:
                    w.end_window()
                # A non-finite loss never gets here: the last good checkpoint (previous epoch) stays.
                checkpoint(epoch + 1 if epoch_done else epoch)
                t_last = time.perf_counter()
    finally:
        bar.close()
    if end.state == "failed" and cfg["progress"]:
        print(f"run {name} failed: {end.reason}")
    return name

def config_from_args(args) -> dict:
    """The flags given, over the --preset's values when one is named."""
    return MNIST.config_from_args(args)

