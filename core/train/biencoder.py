"""Train the argument / counter-argument bi-encoder: `actlab train biencoder ...`.

Reads top to bottom like nanoGPT's train.py. DDP switches on from the torchrun environment
(RANK / WORLD_SIZE / LOCAL_RANK): nccl on CUDA, gloo on CPU. Rank 0 writes the run store,
the text log and checkpoints; dead-unit masks are all-reduced so every rank agrees.

Per epoch: re-mine one hard negative per training pair with a BallTree over the current
embeddings, train on (argument, counter, hard negative) with a triplet loss plus a pair
classifier, then evaluate top-1/5/10 and MRR of retrieving the true counter among all test
counters.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm  # tqdm.write keeps epoch lines clear of the bar

from ..errors import UserError
from ..models.biencoder import (PRESETS, BiEncoder, TokenCache, backbone_activations, feature_key, load_backbone,
                            load_features, save_features, set_backbone_activation)
from ..models.negatives import hard_negatives, retrieval_metrics, retrieval_ranks
from ..models.retrieval import ndcg_during_training, training_eval_set
from ..models.text_data import load_pairs, split_by_topic
from .loop import (check_finite, pick_device, progress,
                             save_checkpoint, seed_everything)
from ..watcher import watch
from . import session
from .config import BIENCODER

DEFAULTS = BIENCODER.defaults()  # the one declaration of every option is core/train/config.py


class BiEncoderTrainModel(torch.nn.Module):
    """One forward over [anchors; positives; negatives] so DDP sees every parameter used once
    (calling the pair classifier outside forward would skip its gradient all-reduce)."""

    def __init__(self, encoder: BiEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids=None, attention_mask=None, pooled=None):
        # `pooled`: cached backbone features (frozen backbone), so only the head runs.
        emb = self.encoder.head(pooled) if pooled is not None else self.encoder.encode(input_ids, attention_mask)
        a, p, n = emb.chunk(3)
        logits = self.encoder.pair_logits(torch.cat([a, a]), torch.cat([p, n]))
        return a, p, n, logits


@torch.no_grad()
def encode_texts(encoder: BiEncoder, cache: TokenCache, rows: torch.Tensor, device, batch_size: int,
                 features: torch.Tensor | None = None) -> torch.Tensor:
    if features is not None:
        return encoder.head(features[rows.to(features.device)])
    out = [encoder.encode(*cache.batch(rows[i:i + batch_size], device)) for i in range(0, len(rows), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


class FeatureTokenizer:
    """Stands in for a tokenizer when the backbone's features are cached: a text's one "token" is
    its feature row, so code that tokenises texts (the nDCG evaluation) runs unchanged."""

    def __init__(self, index: dict[str, int]):
        self.index = index

    def __call__(self, texts, **_):
        ids = torch.tensor([[self.index[t]] for t in texts], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class CachedFeatureEncoder(torch.nn.Module):
    """forward(rows from FeatureTokenizer) -> the head on the cached features of those texts."""

    def __init__(self, encoder: BiEncoder, features: torch.Tensor):
        super().__init__()
        self.encoder, self.features = encoder, features

    def forward(self, input_ids, attention_mask=None):
        return self.encoder.head(self.features[input_ids[:, 0].to(self.features.device)])


@torch.no_grad()
def pooled_features(backbone, tokenizer, texts: list[str], pooling: str, max_length: int, device,
                    batch_size: int = 64) -> torch.Tensor:
    """The frozen backbone's pooled vector of every text, in eval mode (no dropout), on the CPU."""
    enc = BiEncoder(backbone, "linear1", pooling, freeze_backbone=True).to(device).eval()
    cache = TokenCache(tokenizer, texts, max_length)
    rows = torch.arange(len(cache.texts))
    return torch.cat([enc.pool(*cache.batch(rows[i:i + batch_size], device)).float().cpu()
                      for i in range(0, len(rows), batch_size)])


def _data(cfg: dict, master: bool):
    """Pairs split by topic (fixed seed 0, so all seeds of an ablation share one test set and differ
    only in initialisation and batch order), and the nDCG evaluation set on rank 0."""
    pairs = load_pairs(cfg["data"])
    train_df, test_df = split_by_topic(pairs, cfg["test_fraction"], seed=0)
    if len(train_df) < 2 or len(test_df) < 2:
        raise UserError(f"{cfg['data']}: need at least 2 train and 2 test pairs after the topic split "
                        f"(got {len(train_df)} / {len(test_df)})")
    # ndcg@10/test: held-out queries against the full corpus (a BEIR view of plain pairs), as BEIR scores it.
    ndcg_set = training_eval_set(cfg["data"], pairs, test_df) if master else None
    return train_df, test_df, pairs, ndcg_set


def _encoder(cfg: dict, pairs, ndcg_set, device, master: bool):
    """The bi-encoder and the token cache of every text. A frozen backbone computes the same pooled
    vector for a text every time: its features are computed once per (backbone, texts, pooling,
    max length, FFN activation), kept on disk, and only the head trains on them. Backbone probes
    need the backbone to run, so they turn the cache off. Returns (encoder, cache, features or
    None, tokenizer or None)."""
    texts = list(dict.fromkeys(list(pairs["argument"]) + list(pairs["counter"])))
    if ndcg_set is not None and cfg["freeze_backbone"]:
        # The nDCG corpus and queries are scored through the cached features too.
        texts = list(dict.fromkeys(texts + list(ndcg_set.doc_texts) + list(ndcg_set.query_texts)))
    if cfg["freeze_backbone"] and cfg["feature_cache"] and not cfg["probe_backbone"]:
        key = feature_key(cfg["backbone"], cfg["seed"], texts, cfg["pooling"], cfg["max_length"], cfg["backbone_activation"])
        features = load_features(key)
        if features is None or len(features) != len(texts):
            backbone, tokenizer = load_backbone(cfg["backbone"], seed=cfg["seed"])
            if cfg["backbone_activation"]:
                set_backbone_activation(backbone, cfg["backbone_activation"])
            features = pooled_features(backbone, tokenizer, texts, cfg["pooling"], cfg["max_length"], device)
            if master:
                save_features(key, features)
            del backbone
        features = features.to(device)
        torch.manual_seed(cfg["seed"])  # the head's init must not depend on whether a backbone was built
        encoder = BiEncoder(None, cfg["head"], cfg["pooling"], cfg["head_dim"], True,
                            hidden_size=features.shape[1]).to(device)
        return encoder, TokenCache(None, texts), features, None
    backbone, tokenizer = load_backbone(cfg["backbone"], seed=cfg["seed"])
    if cfg["backbone_activation"]:
        set_backbone_activation(backbone, cfg["backbone_activation"])
    torch.manual_seed(cfg["seed"])
    encoder = BiEncoder(backbone, cfg["head"], cfg["pooling"], cfg["head_dim"], cfg["freeze_backbone"]).to(device)
    return encoder, TokenCache(tokenizer, texts, cfg["max_length"]), None, tokenizer


def train_biencoder(config: dict) -> str:  # long: the training loop reads top to bottom in one function (STYLE.md, nanoGPT)
    """Run one training; returns the run name. `config` holds plain values (see DEFAULTS)."""
    run = session.start(BIENCODER, config)
    cfg, ckpt = run.cfg, run.ckpt

    # -- distributed setup -----------------------------------------------------------------
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    if ddp:
        use_cuda = torch.cuda.is_available() and cfg["device"] in ("auto", "cuda")
        dist.init_process_group("nccl" if use_cuda else "gloo")
        device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
    else:
        device = pick_device(cfg["device"])
    master = rank == 0
    seed_everything(cfg["seed"])

    train_df, test_df, pairs, ndcg_set = _data(cfg, master)
    encoder, cache, features, tokenizer = _encoder(cfg, pairs, ndcg_set, device, master)
    tr_arg, tr_ctr = cache.ids(list(train_df["argument"])), cache.ids(list(train_df["counter"]))
    te_arg, te_ctr = cache.ids(list(test_df["argument"])), cache.ids(list(test_df["counter"]))
    # Candidates are distinct counter texts; a pair's target is its counter's candidate index.
    te_cand = torch.unique(te_ctr)
    te_target = torch.searchsorted(te_cand, te_ctr)
    # Pairs sharing a counter text must not see that text as their negative.
    same_text = {}
    for i, c in enumerate(tr_ctr.tolist()):
        same_text.setdefault(c, []).append(i)
    exclude = [same_text[c] for c in tr_ctr.tolist()]

    model = BiEncoderTrainModel(encoder)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    start_epoch, step = 0, 0
    if ckpt is not None:
        # A frozen backbone's weights are not in the checkpoint: they are rebuilt from the config.
        missing, unexpected = encoder.load_state_dict(ckpt["model"], strict=False)
        bad = [k for k in [*missing, *unexpected] if not (cfg["freeze_backbone"] and k.startswith("backbone."))]
        if bad:
            raise UserError(f"checkpoint of {cfg['resume']} does not fit the model: {', '.join(bad[:3])}")
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
    triplet = torch.nn.TripletMarginLoss(margin=cfg["triplet_margin"])

    # -- watch (rank 0 writes the run store; every rank hooks, statistics are all-reduced) ----
    name = cfg["name"] or f"biencoder-{cfg['head'] if cfg['head'] in PRESETS else 'custom'}-s{cfg['seed']}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg["name"] = name
    # Our trainer is a user of watch() like any loop. The head's activations by module path (head.<i>);
    # under --probe-backbone the backbone's FFN activations too, named by layer (backbone.layer<i>.ffn).
    # Window: the epoch.
    w = watch(encoder, run=name, log_every=cfg["log_every"], runs_dir=cfg["runs_dir"], eps=cfg["eps"],
              bins=cfg["hist_bins"], hist_range=tuple(cfg["hist_range"]), window="manual", start_step=step,
              exclude=("backbone",), extra=backbone_activations(encoder) if cfg["probe_backbone"] else None,
              kind="biencoder", resume=ckpt is not None, dormancy=bool(cfg["dormancy"]),
              config={**cfg, "world_size": world, "n_train": len(train_df), "n_test": len(test_df)}, verbose=False)
    writer = w.writer
    if master and cfg["text_log"] and ckpt is None:
        Path(cfg["text_log"]).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg["text_log"]).write_text("")

    # Every rank takes the same number of steps (DDP needs matching all-reduces): drop the tail.
    per_rank = len(train_df) // world
    steps_per_epoch = max(1, per_rank // cfg["batch_size"]) if per_rank >= cfg["batch_size"] else 1
    batch = min(cfg["batch_size"], per_rank)
    total_steps = steps_per_epoch * cfg["epochs"]
    if cfg["max_steps"]:
        total_steps = min(total_steps, cfg["max_steps"])
    labels = torch.cat([torch.ones(batch, dtype=torch.long), torch.zeros(batch, dtype=torch.long)]).to(device)

    # Head-only steps are tiny matmuls: on CPU, intra-op threads cost more in OpenMP handshakes than
    # they save (profiled on the 2-core box: 27 ms vs 1.4 ms per step with 2 vs 1 thread).
    threads = torch.get_num_threads()
    if features is not None and device.type == "cpu":
        torch.set_num_threads(1)
    loss_sum, n_since = torch.zeros((), device=device), 0  # since the last log interval
    bar = progress(total_steps, initial=min(step, total_steps), desc=name, disable=not (master and cfg["progress"]))
    try:
        # Finished, stopped or failed with the reason (a NaN/inf loss: "loss became nan at step N",
        # re-raised; the last good epoch's checkpoint stays, as one is only saved after check_finite).
        with session.lifecycle(w, raise_nonfinite=True) as end:
            stop = end.stop
            for epoch in range(start_epoch, cfg["epochs"]):
                if step >= total_steps or stop.requested:
                    break
                # -- hard negatives from the current embeddings --------------------------------
                encoder.eval()
                with w.paused():
                    a_emb = encode_texts(encoder, cache, tr_arg, device, 64, features).cpu()
                    c_emb = encode_texts(encoder, cache, tr_ctr, device, 64, features).cpu()
                neg = torch.from_numpy(hard_negatives(a_emb.numpy(), c_emb.numpy(), torch.arange(len(tr_ctr)).numpy(), k=1, exclude=exclude)[:, 0])
                if ddp:
                    dist.broadcast(neg, src=0)  # float noise could pick different neighbours per rank

                # -- one epoch of triplets --------------------------------------------------------
                encoder.train()
                g = torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)
                order = torch.randperm(len(train_df), generator=g)[rank::world][: steps_per_epoch * batch]
                epoch_loss_sum, n_epoch = torch.zeros((), device=device), 0
                for b in range(steps_per_epoch):
                    if step >= total_steps or stop.requested:
                        break
                    idx = order[b * batch:(b + 1) * batch]
                    rows = torch.cat([tr_arg[idx], tr_ctr[idx], tr_ctr[neg[idx]]])
                    if features is not None:
                        a, p, n, logits = model(pooled=features[rows.to(features.device)])
                    else:
                        a, p, n, logits = model(*cache.batch(rows, device))
                    loss = triplet(a, p, n) + cfg["ce_weight"] * F.cross_entropy(logits, labels[: 2 * len(idx)])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    # Accumulate on the device; the host reads it only at log intervals.
                    loss_sum += loss.detach()
                    epoch_loss_sum += loss.detach()
                    n_since += 1
                    n_epoch += 1
                    step += 1
                    bar.update(1)
                    w.epoch = epoch + (b + 1) / steps_per_epoch
                    # Every rank steps (and so flushes, with its all-reduce) at the same steps.
                    w.step()
                    # The epoch's last step is logged by the evaluation below, once per step.
                    if step % cfg["log_every"] == 0 and b < steps_per_epoch - 1 and step < total_steps:
                        train_loss = float(loss_sum) / n_since
                        check_finite(train_loss, step)
                        loss_sum.zero_()
                        n_since = 0
                        if master:
                            writer.log_scalars(step, {"loss/train": train_loss}, epoch=epoch + (b + 1) / steps_per_epoch)
                            bar.set_postfix(loss=f"{train_loss:.4f}")

                # -- evaluate on the held-out topics ----------------------------------------------
                epoch_loss = float(epoch_loss_sum) / max(n_epoch, 1)
                check_finite(epoch_loss, step)
                if w.last_flush_step != step:  # the epoch's partial last interval (all ranks together)
                    w.flush()
                loss_sum.zero_()
                n_since = 0
                encoder.eval()
                with w.paused():
                    q = encode_texts(encoder, cache, te_arg, device, 64, features)
                    c = encode_texts(encoder, cache, te_cand, device, 64, features)
                    ndcg = None
                    if master:
                        ndcg = (ndcg_during_training(ndcg_set, CachedFeatureEncoder(encoder, features), FeatureTokenizer(cache.index),
                                                     device, cfg["max_length"]) if features is not None else
                                ndcg_during_training(ndcg_set, encoder, tokenizer, device, cfg["max_length"]))
                metrics = retrieval_metrics(retrieval_ranks(q, c, te_target.to(q.device)))
                metrics["ndcg@10/test"] = ndcg
                if master:
                    values = {"loss/train": epoch_loss, **metrics}
                    writer.log_scalars(step, values, epoch=epoch + 1)
                    if cfg["text_log"]:
                        with open(cfg["text_log"], "a") as f:
                            f.write(f"epoch={epoch + 1} step={step} loss/train={epoch_loss:.4f} "
                                    + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()) + "\n")
                    tqdm.write(f"{name} epoch {epoch + 1}: loss {epoch_loss:.4f} top1 {metrics['acc/top1']:.3f} "
                               f"top10 {metrics['acc/top10']:.3f} mrr {metrics['mrr']:.3f} ndcg@10 {metrics['ndcg@10/test']:.3f}")
                    if cfg["checkpoint"]:
                        weights = {k: v for k, v in encoder.state_dict().items()
                                 if not (cfg["freeze_backbone"] and k.startswith("backbone."))}
                        save_checkpoint(Path(cfg["checkpoints_dir"]) / name / "last.pt", {
                            "model": weights, "optimizer": optimizer.state_dict(),
                            "config": cfg, "step": step, "epoch": epoch + 1})
                w.end_window()
    finally:
        torch.set_num_threads(threads)
        bar.close()
        if ddp and dist.is_initialized():
            dist.destroy_process_group()
    return name


def config_from_args(args) -> dict:
    cfg = {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)}
    if cfg.get("backbone_activation"):
        from ..models.biencoder import parse_activation

        parse_activation(cfg["backbone_activation"])
    return cfg

