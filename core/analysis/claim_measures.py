"""Measurements behind the claims (`actlab claims measure ...`): each returns the result dict that
claims.py reads back from bench/results/."""
from __future__ import annotations

import sys
import tempfile
import time

from .claims import MNIST_EPOCHS, machine


def _meta(**extra) -> dict:
    return {"machine": machine(), "command": "actlab " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}


def measure_sigmoid_derivative() -> dict:
    import torch

    from ..activations import derivatives

    x = torch.arange(-160, 161, dtype=torch.float64) / 20  # -8..8, with 0 exactly
    y, dy, _ = derivatives("sigmoid", x)
    return {"kind": "claim:sigmoid_derivative", "meta": _meta(dtype="float64"),
            "x": x.tolist(), "y": y.detach().tolist(), "dy": dy.detach().tolist()}


def measure_mnist(data: str = "bundled", data_dir: str | None = None, epochs: int = MNIST_EPOCHS,
                  device: str = "auto", seed: int = 0) -> dict:
    """The note's MLP (train mnist defaults: 784-512-ReLU-10, Adam 1e-3, batch 64), test accuracy per epoch."""
    from ..store.runs import RunStore
    from ..train.mnist import train_mnist

    with tempfile.TemporaryDirectory(prefix="actlab-claim-") as tmp:
        name = train_mnist({"epochs": epochs, "data": data, "data_dir": data_dir, "device": device, "seed": seed,
                            "runs_dir": f"{tmp}/runs", "checkpoints_dir": f"{tmp}/ckpt", "name": "claim-mnist",
                            "progress": False})
        with RunStore(f"{tmp}/runs").open(name) as r:
            df, cfg = r.scalars(keys=["acc/test"])[0], r.config
    from ..models.data import load_mnist

    sizes = load_mnist(data, data_dir=data_dir)  # the same split the run used, to label the result
    cfg = {**cfg, "n_train": len(sizes["y_train"]), "n_test": len(sizes["y_test"])}
    rows = df.sort_values("step")
    keep = ("hidden", "activation", "optimizer", "lr", "batch_size", "epochs", "seed", "data")
    return {"kind": "claim:mnist",
            "meta": _meta(data=data, n_train=cfg.get("n_train"), n_test=cfg.get("n_test"),
                          config={k: cfg.get(k) for k in keep}),
            "epochs": [{"epoch": float(e), "step": int(s), "acc/test": float(v)}
                       for e, s, v in zip(rows["epoch"], rows["step"], rows["value"])]}


def measure_ffn_sparsity(backbone: str = "minilm", data: str = "demo", max_length: int = 128,
                         finetune_epochs: int = 1, device: str = "auto") -> dict:
    """Per-layer fraction of the backbone FFN's outputs that are exactly 0 on every real token of
    every text, eval mode: the original (GELU) model vs the same weights relufied. Also zero-shot
    retrieval (mean pooling, no head) and, after `finetune_epochs` of `train biencoder`, top-1."""
    import torch

    from ..models.biencoder import TokenCache, load_backbone, set_backbone_activation
    from ..models.negatives import retrieval_metrics, retrieval_ranks
    from ..store.runs import RunStore
    from ..models.text_data import load_pairs, split_by_topic
    from ..train.biencoder import train_biencoder
    from ..devices import pick_device

    dev = pick_device(device)
    pairs = load_pairs(data)
    _, test = split_by_topic(pairs, 0.2, seed=0)
    texts = list(dict.fromkeys(list(pairs["argument"]) + list(pairs["counter"])))
    results = []
    for act in ("gelu", "relu"):
        model, tok = load_backbone(backbone)
        if act == "relu":
            set_backbone_activation(model, "relu")
        model.to(dev).eval()
        zeros, counts, mask_now = {}, {}, {}
        hooks = []
        for i, layer in enumerate(model.encoder.layer):
            def hook(mod, inp, out, i=i, zeros=zeros, counts=counts, mask_now=mask_now):
                m = mask_now["m"].unsqueeze(-1).to(out.dtype)  # real tokens only, not padding
                zeros[i] = zeros.get(i, 0) + float(((out == 0).to(out.dtype) * m).sum())
                counts[i] = counts.get(i, 0) + float(m.sum()) * out.shape[-1]
            hooks.append(layer.intermediate.intermediate_act_fn.register_forward_hook(hook))
        cache = TokenCache(tok, texts, max_length)
        pooled = []
        with torch.no_grad():
            for s in range(0, len(texts), 64):
                ids, mask = cache.batch(torch.arange(s, min(s + 64, len(texts))), dev)
                mask_now["m"] = mask
                h = model(input_ids=ids, attention_mask=mask).last_hidden_state
                mm = mask.unsqueeze(-1).to(h.dtype)
                pooled.append(((h * mm).sum(1) / mm.sum(1).clamp_min(1)).cpu())
        for h in hooks:
            h.remove()
        emb = torch.cat(pooled)
        q = emb[cache.ids(list(test["argument"]))]
        cand_rows = torch.unique(cache.ids(list(test["counter"])))
        target = torch.searchsorted(cand_rows, cache.ids(list(test["counter"])))
        zero_shot = retrieval_metrics(retrieval_ranks(q, emb[cand_rows], target))
        zf = {f"backbone.layer{i}.ffn": zeros[i] / counts[i] for i in sorted(zeros)}
        entry = {"activation": act, "original": act == "gelu", "zero_frac": zf,
                 "zero_frac_mean": sum(zf.values()) / len(zf), "zero_shot": zero_shot}
        del model
        if finetune_epochs:
            with tempfile.TemporaryDirectory(prefix="actlab-claim-") as tmp:
                name = train_biencoder({"backbone": backbone, "data": data, "max_length": max_length, "device": device,
                                        "epochs": finetune_epochs, "backbone_activation": "relu" if act == "relu" else None,
                                        "probe_backbone": True, "runs_dir": tmp, "name": f"ffn-{act}",
                                        "checkpoint": False, "progress": False, "pooling": "mean"})
                last = RunStore(tmp).summary(name)["last"]
            entry["finetuned"] = {"epochs": finetune_epochs, "acc/top1": last.get("acc/top1"), "mrr": last.get("mrr"),
                                  "zero_frac_train": {k.split("/", 1)[1]: v for k, v in last.items()
                                                      if k.startswith("zero_frac/backbone.")}}
        results.append(entry)
    return {"kind": "claim:ffn_sparsity",
            "meta": _meta(backbone=backbone, data=data, max_length=max_length, n_texts=len(texts),
                          n_test=len(test), pooling="mean"),
            "results": results}
