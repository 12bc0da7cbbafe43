"""`python -m core train mnist`: an MLP on MNIST with live dead-unit probes, nanoGPT style.

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

from .. import paths
from ..errors import UserError
from .. import argtypes as T
from ..activations import parse_param_args, resolve_params
from ..models.data import load_mnist
from ..models.mlp import MLP
from ..store.runs import RunStore, check_lookup_name, validate_run_name
from .loop import (GracefulStop, NonFiniteLoss, add_common_args, autocast, check_finite, load_checkpoint,
                             maybe_compile, pick_device, progress, save_checkpoint, seed_everything)
from ..watch import watch

DEFAULTS = dict(
    epochs=1, lr=1e-3, batch_size=64, optimizer="adam", weight_decay=0.0, momentum=0.9,
    activation="relu", act_params={}, hidden=[512], norm="none", init="default", init_bias=0.0, dropout=0.0,
    data="bundled", data_dir=None, seed=0, device="auto", bf16=False, compile=False,
    log_every=50, max_steps=None, eps=0.0, hist_bins=64, hist_range=[-6.0, 6.0], probes=True, probe_size=1000,
    runs_dir=None, checkpoints_dir=None, name=None, resume=None,
    fault_nan_at_step=None, progress=True, threads=1,
    recycle_every=None, recycle_tau=0.1, branch_from=None,
)
# Large Adam steps on a negatively biased first layer push most ReLU pre-activations below zero
# for every digit within a few hundred steps; LeakyReLU under the same preset keeps them alive.
PRESETS = {"stress": dict(lr=2e-2, init_bias=-1.0, optimizer="adam")}
OPTIMIZERS = ("adam", "adamw", "sgd")


def validate(cfg: dict) -> dict:
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise UserError(f"unknown mnist config key {sorted(unknown)[0]!r}")
    cfg["act_params"] = resolve_params(cfg["activation"], **(cfg["act_params"] or {}))
    if cfg["optimizer"] not in OPTIMIZERS:
        raise UserError(f"--optimizer {cfg['optimizer']!r}: expected one of {', '.join(OPTIMIZERS)}")
    if int(cfg["threads"]) < 0:
        raise UserError(f"--threads must be >= 0 (0 = torch's default), got {cfg['threads']}")
    for key in ("epochs", "batch_size", "log_every"):
        if int(cfg[key]) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be >= 1, got {cfg[key]}")
    if cfg["max_steps"] is not None and int(cfg["max_steps"]) < 1:
        raise UserError(f"--max-steps must be >= 1, got {cfg['max_steps']}")
    if not (math.isfinite(float(cfg["lr"])) and float(cfg["lr"]) > 0):
        raise UserError(f"--lr must be a positive number, got {cfg['lr']}")
    # The same rules as the flags (core.argtypes), for configs that come as a dict (ablation, tests).
    if not (math.isfinite(float(cfg["weight_decay"])) and float(cfg["weight_decay"]) >= 0):
        raise UserError(f"--weight-decay must be a finite number >= 0, got {cfg['weight_decay']}")
    if not 0 <= float(cfg["dropout"]) < 1:
        raise UserError(f"--dropout must be in [0, 1), got {cfg['dropout']}")
    if not math.isfinite(float(cfg["init_bias"])):
        raise UserError(f"--init-bias must be a finite number, got {cfg['init_bias']}")
    if cfg["recycle_every"] is not None and int(cfg["recycle_every"]) < 1:
        raise UserError(f"--recycle-every must be >= 1, got {cfg['recycle_every']}")
    if not 0.0 <= float(cfg["recycle_tau"]) <= 1.0:
        raise UserError(f"--recycle-tau must be in [0, 1], got {cfg['recycle_tau']}")
    if cfg["name"] is not None and not cfg["resume"]:  # a resumed run keeps the name it has
        validate_run_name(cfg["name"])
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
    threads = int({**DEFAULTS, **config}["threads"] or 0)
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        return _train_mnist(config)
    finally:
        torch.set_num_threads(before)


def _train_mnist(config: dict) -> str:
    cfg = {**DEFAULTS, **config}
    # Read at call time, so a test or the dashboard can point ACTLAB_RUNS_DIR elsewhere after import.
    cfg["runs_dir"] = str(cfg["runs_dir"] or paths.runs_dir())
    cfg["checkpoints_dir"] = str(cfg["checkpoints_dir"] or paths.checkpoints_dir())
    if cfg["resume"] and cfg["branch_from"]:  # before either one reads a checkpoint
        raise UserError("--resume and --branch-from: pick one (resume continues a run, a branch starts a new one)")
    ckpt = None
    if cfg["resume"]:
        name = check_lookup_name(cfg["resume"])
        ckpt = load_checkpoint(Path(cfg["checkpoints_dir"]) / name / "last.pt")
        # The saved config wins, except for what the caller set explicitly now (e.g. more --epochs).
        cfg = {**DEFAULTS, **ckpt["config"], **{k: v for k, v in config.items() if k != "name"}}
        cfg["name"] = name
    branch_of = None
    if cfg["branch_from"]:
        # A counterfactual: a new run from another run's latest checkpoint, with the changes asked for
        # (recycling, another activation, another lr); the original goes on untouched.
        src = check_lookup_name(cfg["branch_from"])
        ckpt = load_checkpoint(Path(cfg["checkpoints_dir"]) / src / "last.pt")
        keep = {k: v for k, v in ckpt["config"].items() if k in DEFAULTS and k not in ("name", "resume", "branch_from")}
        cfg = {**DEFAULTS, **keep, **config, "checkpoints_dir": cfg["checkpoints_dir"], "runs_dir": cfg["runs_dir"]}
        cfg["name"] = cfg["name"] or f"{src}-branch-{time.strftime('%H%M%S')}"
        branch_of = {"run": src, "step": int(ckpt["step"])}
    cfg = validate(cfg)
    name = cfg["name"] or time.strftime("mnist-%Y%m%d-%H%M%S")
    cfg["name"] = name
    device = pick_device(cfg["device"])
    seed_everything(cfg["seed"])

    data = load_mnist(cfg["data"], device=device, data_dir=cfg["data_dir"], split_seed=0)
    x_train, y_train = data["x_train"], data["y_train"]
    model = MLP(784, cfg["hidden"], 10, cfg["activation"], cfg["act_params"], cfg["norm"], cfg["init"],
                cfg["dropout"], cfg["init_bias"]).to(device)
    optimizer = make_optimizer(cfg, model.parameters())
    step, start_epoch = 0, 0
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:  # e.g. a branch to an activation with parameters (prelu)
            raise UserError(f"checkpoint does not fit this model: {str(e).splitlines()[0][:200]}") from None
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # the lr asked for now, not the one the checkpoint saved
            group["lr"] = cfg["lr"]
        step, start_epoch = int(ckpt["step"]), int(ckpt["epoch"])

    # Our trainer is a user of watch() like any other loop. The dead/dormant window is the epoch.
    w = watch(model, run=name, log_every=cfg["log_every"], runs_dir=cfg["runs_dir"], eps=cfg["eps"],
              bins=cfg["hist_bins"], hist_range=cfg["hist_range"], auto=bool(cfg["probes"]), grads=bool(cfg["probes"]),
              window="manual", config={**cfg, **({"branch_of": branch_of} if branch_of else {})}, kind="mnist",
              resume=bool(cfg["resume"]), start_step=step, verbose=False, optimizer=optimizer,
              recycle_every=int(cfg["recycle_every"]) if cfg["recycle_every"] else None, recycle_tau=cfg["recycle_tau"],
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
    state, reason = "finished", None
    stop = GracefulStop()
    bar = progress(total, initial=min(step, total), desc=name, disable=not cfg["progress"] or None)
    fault = torch.tensor(float("nan"), device=device)
    epoch = start_epoch
    try:
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
            checkpoint(epoch + 1 if epoch_done else epoch)
            t_last = time.perf_counter()
        if stop.requested:
            state, reason = "stopped", "stop requested (SIGTERM/SIGINT); checkpoint saved"
    except NonFiniteLoss as e:
        # The last good checkpoint (previous epoch) stays as it is: nothing non-finite is saved.
        state, reason = "failed", str(e)
    except BaseException as e:
        w.close("failed", f"{e.__class__.__name__}: {e}"[:500])
        bar.close()
        stop.restore()
        raise
    bar.close()
    stop.restore()
    w.close(state, reason)
    if state == "failed" and cfg["progress"]:
        print(f"run {name} failed: {reason}")
    return name


def add_cli(sub) -> None:
    p = sub.add_parser("mnist", help="MLP on MNIST with live dead-unit probes")
    add_common_args(p, DEFAULTS)
    p.add_argument("--activation", default=None, help="registry name (python -m core activations list)")
    p.add_argument("--param", type=T.key_value, action="append", metavar="K=V", help="activation parameter, repeatable")
    p.add_argument("--hidden", type=T.positive_int, nargs="+", default=None)
    p.add_argument("--norm", default=None, choices=["none", "layernorm", "batchnorm"])
    p.add_argument("--init", default=None, choices=["default", "he", "xavier"])
    p.add_argument("--init-bias", type=T.finite_float, default=None)
    p.add_argument("--dropout", type=T.probability, default=None)
    p.add_argument("--optimizer", default=None, choices=list(OPTIMIZERS))
    p.add_argument("--weight-decay", type=T.non_negative_float, default=None)
    p.add_argument("--data", default=None, choices=["bundled", "full"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--checkpoints-dir", default=None)
    p.add_argument("--preset", default=None, choices=list(PRESETS))
    p.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast (CUDA only)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile (CUDA only)")
    p.add_argument("--threads", type=T.non_negative_int, default=None, help="CPU threads for torch (default 1; 0 = torch's default)")
    p.add_argument("--no-probes", dest="probes", action="store_false", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.add_argument("--recycle-every", type=T.positive_int, default=None, metavar="N",
                   help="recycle tau-dormant units (ReDo) at the first flush every N steps")
    p.add_argument("--recycle-tau", type=T.unit_interval, default=None, help="tau for --recycle-every (default 0.1)")
    p.add_argument("--branch-from", type=T.existing_run_name, default=None, metavar="RUN",
                   help="start a new run from RUN's latest checkpoint (with the flags given here changed)")
    p.add_argument("--fault-nan-at-step", type=T.positive_int, default=None, help=argparse_suppress())
    # None = not given, so a preset or a resumed run's saved config is not overwritten by defaults.
    p.set_defaults(func=_cli, epochs=None, lr=None, batch_size=None, seed=None, device=None, log_every=None,
                   runs_dir=None)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def config_from_args(args) -> dict:
    cfg = dict(PRESETS[args.preset]) if args.preset else {}
    for key in DEFAULTS:
        v = getattr(args, key, None)
        if v is not None:
            cfg[key] = v
    if args.param:
        cfg["act_params"] = parse_param_args(args.param)
    return cfg


def _cli(args) -> int:
    name = train_mnist(config_from_args(args))
    st = RunStore(args.runs_dir).summary(name)
    acc = st["last"].get("acc/test")
    print(f"run {name}: {st['status']}" + (f" ({st['reason']})" if st["reason"] else "")
          + (f", test accuracy {acc:.4f}" if acc is not None else ""))
    return 0 if st["status"] in ("finished", "stopped") else 1
