"""Retrieval evaluation on the BEIR protocol: `actlab eval biencoder ...`.

Full-corpus exact search, scored the way BEIR scores it (pytrec_eval, i.e. trec_eval semantics),
so a figure here can be set beside a published one:

- documents are `title + " " + text`; every document of the corpus is a candidate;
- embeddings are L2-normalised and ranked by dot product (cosine), top-k taken in chunks of
  queries x documents so memory stays bounded whatever the corpus size;
- `ignore_identical_ids`: a retrieved document whose id equals the query id is dropped. On ArguAna
  every query is itself in the corpus and would otherwise rank first (BEIR's evaluator does the same);
- metrics: nDCG@10, Recall@100, MRR@10, MAP@100 with trec_eval's tie order (score descending,
  then document id descending), averaged over every query that has a relevant document.

Corpus embeddings are cached on disk by (model weights hash, corpus hash, pooling, max length,
dtype), so a second evaluation of the same model only encodes the queries.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import paths
from ..errors import UserError
from .text_data import BeirData, beir_folder, read_beir, user_cache_dir

TOP_K = 100  # the deepest cut any reported metric needs (recall@100, map@100)
METRICS = ("ndcg@10", "recall@100", "mrr@10", "map@100")
# Training scores a fixed subset when the data is large: the corpus is re-encoded at every evaluation.
TRAIN_MAX_QUERIES = 1000
TRAIN_MAX_DOCS = 20000


# -- metrics (trec_eval semantics) -----------------------------------------------------------
def trec_ranking(scores: dict[str, float]) -> list[str]:
    """Document ids in trec_eval's order: score descending, ties broken by document id descending."""
    by_id = sorted(scores, reverse=True)
    return sorted(by_id, key=lambda d: scores[d], reverse=True)  # stable: equal scores keep id order


def query_metrics(rels: dict[str, int], scores: dict[str, float]) -> dict[str, float]:
    """One query's ndcg@10 (gain = relevance grade, log2 discount), recall@100, mrr@10, map@100.
    A document is relevant at grade >= 1, as trec_eval's default relevance level."""
    ranked = trec_ranking(scores)
    n_rel = sum(1 for g in rels.values() if g >= 1)
    gains = [max(rels.get(d, 0), 0) for d in ranked]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:10]))
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    hits = [rels.get(d, 0) >= 1 for d in ranked[:100]]
    rr = next((1.0 / (i + 1) for i, h in enumerate(hits[:10]) if h), 0.0)
    precisions, found = [], 0
    for i, h in enumerate(hits):
        if h:
            found += 1
            precisions.append(found / (i + 1))
    return {"ndcg@10": dcg / idcg if idcg > 0 else 0.0,
            "recall@100": found / n_rel if n_rel else 0.0,
            "mrr@10": rr,
            "map@100": sum(precisions) / n_rel if n_rel else 0.0}


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                 per_query: bool = False) -> dict:
    """Mean of each metric over the queries in `qrels`; a query missing from `run` scores 0
    (trec_eval -c), so dropping hard queries cannot raise the mean."""
    per = {q: query_metrics(rels, run.get(q, {})) for q, rels in qrels.items()}
    mean = {m: float(np.mean([v[m] for v in per.values()])) if per else 0.0 for m in METRICS}
    return {**mean, "per_query": per} if per_query else mean


# -- exact search ----------------------------------------------------------------------------
@torch.inference_mode()
def exact_search(queries: torch.Tensor, docs: torch.Tensor, k: int = TOP_K, self_index: torch.Tensor | None = None,
                 query_chunk: int = 256, doc_chunk: int = 50_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k documents per query by cosine similarity. Peak extra memory is one
    query_chunk x doc_chunk score block plus the running top-k. `self_index[i]` (or -1) is the
    corpus row whose id equals query i's id; that row is never returned.
    Returns (scores, indices), each (n_queries, k'), k' = min(k, n_docs); a slot with no document
    left (tiny corpora with self-exclusion) has score -inf."""
    q_all = nn.functional.normalize(queries.float(), dim=-1)
    d_all = nn.functional.normalize(docs.float(), dim=-1)
    n_q, n_d = len(q_all), len(d_all)
    k = min(k, n_d)
    out_s = torch.empty(n_q, k, dtype=torch.float32)
    out_i = torch.empty(n_q, k, dtype=torch.long)
    for q0 in range(0, n_q, query_chunk):
        q = q_all[q0:q0 + query_chunk]
        best_s = torch.full((len(q), k), -math.inf, device=q.device)
        best_i = torch.full((len(q), k), -1, dtype=torch.long, device=q.device)
        own = self_index[q0:q0 + query_chunk].to(q.device) if self_index is not None else None
        for d0 in range(0, n_d, doc_chunk):
            s = q @ d_all[d0:d0 + doc_chunk].T
            if own is not None:
                rows = torch.nonzero((own >= d0) & (own < d0 + s.shape[1])).flatten()
                s[rows, own[rows] - d0] = -math.inf
            top_s, top_i = s.topk(min(k, s.shape[1]), dim=1)
            merged_s = torch.cat([best_s, top_s], 1)
            merged_i = torch.cat([best_i, top_i + d0], 1)
            best_s, pos = merged_s.topk(k, dim=1)
            best_i = merged_i.gather(1, pos)
        out_s[q0:q0 + len(q)] = best_s.cpu()
        out_i[q0:q0 + len(q)] = best_i.cpu()
    return out_s, out_i


# -- encoders --------------------------------------------------------------------------------
class PooledBackbone(nn.Module):
    """A pretrained encoder used as is (zero-shot): pooled last hidden state, no head.
    all-MiniLM-L6-v2 was trained with mean pooling, which is why `mean` is the default here."""

    def __init__(self, backbone: nn.Module, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise UserError(f"pooling must be cls or mean, got {pooling!r}")
        self.backbone, self.pooling = backbone, pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


@dataclass
class Encoder:
    module: nn.Module          # forward(input_ids, attention_mask) -> (batch, dim)
    tokenizer: object
    name: str                  # what the output reports as the model
    pooling: str
    max_length: int
    fingerprint: str           # hash of the weights: part of the embedding cache key


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (name, dtype, shape, bytes): two runs share a
    cache entry only when their weights are bit-identical."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_encoder(model: str | None = None, checkpoint: str | None = None, checkpoints_dir: str | None = None,
                 pooling: str | None = None, max_length: int | None = None) -> Encoder:
    """`model`: minilm | tiny | a Hugging Face name or folder, used zero-shot (mean pooling, max
    length 256, as sentence-transformers runs all-MiniLM-L6-v2). `checkpoint`: a run name under the
    checkpoints folder (or a .pt path) from `train biencoder`; its own config rebuilds the model."""
    from .biencoder import BiEncoder, load_backbone

    if checkpoint:
        from ..run_names import check_lookup_name
        from ..checkpoints import load_checkpoint

        path = Path(checkpoint)
        if not (path.suffix == ".pt" and path.is_file()):
            root = Path(checkpoints_dir or paths.checkpoints_dir())
            path = root / check_lookup_name(checkpoint) / "last.pt"
        ckpt = load_checkpoint(path)
        cfg = ckpt.get("config") if isinstance(ckpt, dict) else None
        if not isinstance(cfg, dict) or "model" not in ckpt:
            raise UserError(f"{path}: not a bi-encoder checkpoint (expected a dict with 'model' and 'config')")
        if pooling and pooling != cfg.get("pooling", "cls"):
            raise UserError(f"--pooling {pooling}: the checkpoint was trained with {cfg.get('pooling', 'cls')} pooling")
        backbone, tok = load_backbone(cfg.get("backbone", "minilm"), seed=cfg.get("seed", 0))
        enc = BiEncoder(backbone, cfg.get("head", "with_layernorm_relu"), cfg.get("pooling", "cls"), cfg.get("head_dim"))
        try:
            enc.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise UserError(f"{path}: weights do not fit the model its config describes ({str(e).splitlines()[0]})") from None
        return Encoder(enc, tok, f"checkpoint:{checkpoint}", enc.pooling, max_length or int(cfg.get("max_length", 128)),
                       weights_fingerprint(enc))
    name = model or "minilm"
    backbone, tok = load_backbone(name)
    enc = PooledBackbone(backbone, pooling or "mean")
    return Encoder(enc, tok, name, enc.pooling, max_length or 256, weights_fingerprint(enc))


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """auto: bf16 on CUDA where supported, else fp16 on CUDA; float32 on CPU (CPU half is slow)."""
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype != "auto":
        if dtype not in table:
            raise UserError(f"--dtype {dtype!r}: expected auto, float32, float16 or bfloat16")
        if device.type != "cuda" and table[dtype] != torch.float32:
            raise UserError(f"--dtype {dtype} needs CUDA; on {device.type} use float32")
        return table[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def encode_texts(module: nn.Module, tokenizer, texts: list[str], device: torch.device, batch_size: int = 64,
                 max_length: int = 256, dtype: torch.dtype = torch.float32, desc: str = "encode",
                 progress: bool = True) -> torch.Tensor:
    """(len(texts), dim) float32 on the CPU. Texts are batched longest first (similar lengths pad
    little; the first batch shows the peak memory at once) and put back in input order."""
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[torch.Tensor] = []
    ctx = torch.autocast("cuda", dtype=dtype) if device.type == "cuda" and dtype != torch.float32 else contextlib.nullcontext()
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
    with torch.inference_mode(), ctx:
        for b in range(0, len(order), batch_size):
            rows = [texts[i] for i in order[b:b + batch_size]]
            enc = tokenizer(rows, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            emb = module(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            out.append(emb.float().cpu())
            bar.update(len(rows))
    bar.close()
    if not out:
        return torch.empty(0, 0)
    emb = torch.cat(out)
    result = torch.empty_like(emb)
    result[torch.tensor(order)] = emb
    return result


def corpus_fingerprint(ids: list[str], texts: list[str]) -> str:
    h = hashlib.sha256()
    for i, t in zip(ids, texts):
        h.update(i.encode())
        h.update(b"\0")
        h.update(t.encode())
        h.update(b"\1")
    return h.hexdigest()


def cached_corpus_embeddings(encoder: Encoder, ids: list[str], texts: list[str], device: torch.device,
                             batch_size: int, dtype: torch.dtype, use_cache: bool = True,
                             progress: bool = True) -> tuple[torch.Tensor, bool]:
    """(embeddings, read_from_cache). The file lives in <user cache>/embeddings/<key>.pt and is
    read with weights_only=True; an unreadable or mismatched file is re-encoded and replaced."""
    key_src = json.dumps({"model": encoder.fingerprint, "corpus": corpus_fingerprint(ids, texts),
                          "pooling": encoder.pooling, "max_length": encoder.max_length, "dtype": str(dtype)},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    path = user_cache_dir() / "embeddings" / f"{key}.pt"
    if use_cache and path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") == key_src and blob["emb"].shape[0] == len(ids):
                return blob["emb"], True
        except Exception:  # a torn or foreign file: encode again and overwrite it
            pass
    emb = encode_texts(encoder.module, encoder.tokenizer, texts, device, batch_size, encoder.max_length, dtype,
                       desc="corpus", progress=progress)
    if use_cache:
        from ..checkpoints import save_checkpoint  # atomic write: temp file + rename

        try:
            save_checkpoint(path, {"key": key_src, "emb": emb})
        except OSError as e:
            print(f"warning: cannot write the embedding cache {path}: {e}", file=sys.stderr)
    return emb, False


# -- one evaluation --------------------------------------------------------------------------
@dataclass
class EvalSet:
    """What one evaluation scores: corpus, queries, judgements, and what reading them skipped."""
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    skipped_qrels: int = 0
    skipped_queries: int = 0

    @classmethod
    def from_beir(cls, data: BeirData, query_ids: list[str] | None = None, max_queries: int | None = None,
                  max_docs: int | None = None, seed: int = 0) -> EvalSet:
        qids = [q for q in (query_ids if query_ids is not None else data.qrels) if q in data.qrels]
        rng = np.random.default_rng(seed)
        if max_queries and len(qids) > max_queries:
            keep = set(rng.choice(len(qids), max_queries, replace=False).tolist())
            qids = [q for i, q in enumerate(qids) if i in keep]
        doc_ids = list(data.docs)
        if max_docs and len(doc_ids) > max_docs:
            # Every judged document of the kept queries stays; the rest is a seeded sample.
            needed = {d for q in qids for d in data.qrels[q]}
            others = [d for d in doc_ids if d not in needed]
            n_fill = max(0, max_docs - len(needed))
            pick = set(rng.choice(len(others), min(n_fill, len(others)), replace=False).tolist())
            chosen = needed | {d for i, d in enumerate(others) if i in pick}
            doc_ids = [d for d in doc_ids if d in chosen]
        return cls(doc_ids, [data.doc_text(d) for d in doc_ids], qids, [data.queries[q] for q in qids],
                   {q: data.qrels[q] for q in qids}, len(data.skipped_qrels), len(data.skipped_queries))

    @classmethod
    def from_pairs(cls, pairs, test, max_queries: int | None = None, seed: int = 0) -> EvalSet:
        """A BEIR-format view of argument/counter pairs, shaped like ArguAna: the corpus is every
        distinct argument and counter text, a query is a held-out argument whose id is its own
        document's id (so self-exclusion matters as it does on ArguAna), relevant = its counters."""
        texts = list(dict.fromkeys(list(pairs["argument"]) + list(pairs["counter"])))
        doc_of = {t: f"d{i}" for i, t in enumerate(texts)}
        qrels: dict[str, dict[str, int]] = {}
        for arg, ctr in zip(test["argument"], test["counter"]):
            if doc_of[arg] != doc_of[ctr]:
                qrels.setdefault(doc_of[arg], {})[doc_of[ctr]] = 1
        qids = list(qrels)
        if max_queries and len(qids) > max_queries:
            keep = set(np.random.default_rng(seed).choice(len(qids), max_queries, replace=False).tolist())
            qids = [q for i, q in enumerate(qids) if i in keep]
        text_of = {v: k for k, v in doc_of.items()}
        return cls([doc_of[t] for t in texts], texts, qids, [text_of[q] for q in qids], {q: qrels[q] for q in qids})

    def evaluate(self, encoder: Encoder, device: torch.device, batch_size: int = 64, dtype: torch.dtype | None = None,
                 exclude_self: bool = True, use_cache: bool = True, progress: bool = True,
                 query_chunk: int = 256, doc_chunk: int = 50_000) -> dict:
        dtype = dtype or pick_dtype(device)
        encoder.module.to(device).eval()
        t0 = time.perf_counter()
        d_emb, from_cache = cached_corpus_embeddings(encoder, self.doc_ids, self.doc_texts, device, batch_size, dtype,
                                                     use_cache, progress)
        q_emb = encode_texts(encoder.module, encoder.tokenizer, self.query_texts, device, batch_size, encoder.max_length,
                             dtype, desc="queries", progress=progress)
        t1 = time.perf_counter()
        position = {d: i for i, d in enumerate(self.doc_ids)}
        own = torch.tensor([position.get(q, -1) for q in self.query_ids], dtype=torch.long)
        scores, idx = exact_search(q_emb.to(device), d_emb.to(device), TOP_K, own if exclude_self else None,
                                   query_chunk, doc_chunk)
        run = {}
        for qi, q in enumerate(self.query_ids):
            run[q] = {self.doc_ids[j]: float(s) for s, j in zip(scores[qi].tolist(), idx[qi].tolist())
                      if j >= 0 and math.isfinite(s)}
        metrics = evaluate_run(self.qrels, run)
        t2 = time.perf_counter()
        return {**metrics, "n_queries": len(self.query_ids), "n_docs": len(self.doc_ids),
                "skipped_qrels": self.skipped_qrels, "skipped_queries": self.skipped_queries,
                "self_excluded": exclude_self, "queries_in_corpus": int((own >= 0).sum()),
                "model": encoder.name, "pooling": encoder.pooling, "max_length": encoder.max_length,
                "dtype": str(dtype).replace("torch.", ""), "device": str(device), "corpus_from_cache": from_cache,
                "encode_s": round(t1 - t0, 3), "search_s": round(t2 - t1, 3)}


def training_eval_set(source, pairs, test, seed: int = 0) -> EvalSet:
    """What `train biencoder` scores as ndcg@10/test: the held-out topics' queries against the full
    BEIR corpus when the data is a BEIR folder, else the pairs' BEIR view. Large sets are cut to a
    fixed seeded subset (TRAIN_MAX_QUERIES queries, TRAIN_MAX_DOCS documents keeping the relevant ones)."""
    if "query_id" in test.columns:
        data = read_beir(beir_folder(source))
        return EvalSet.from_beir(data, list(dict.fromkeys(test["query_id"])), TRAIN_MAX_QUERIES, TRAIN_MAX_DOCS, seed)
    return EvalSet.from_pairs(pairs, test, TRAIN_MAX_QUERIES, seed)


def ndcg_during_training(eval_set: EvalSet, module: nn.Module, tokenizer, device, max_length: int, batch_size: int = 64) -> float:
    """nDCG@10 of the current weights; no cache (the weights change every epoch), no progress bar."""
    enc = Encoder(module, tokenizer, "training", "", max_length, "")
    # evaluate() puts every submodule in eval mode. Put each one back as it was, not
    # module.train(flag): `module` may be a fresh wrapper around the trained model (the trainer's
    # CachedFeatureEncoder), whose own flag says nothing about its children's modes.
    modes = [(m, m.training) for m in module.modules()]
    try:
        out = eval_set.evaluate(enc, device, batch_size, use_cache=False, progress=False)
    finally:
        for m, training in modes:
            m.training = training
    return out["ndcg@10"]


# -- command line ----------------------------------------------------------------------------
