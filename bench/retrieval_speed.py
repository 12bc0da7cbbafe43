"""Retrieval evaluation speed: `python bench/retrieval_speed.py [--device auto] [--docs 8674] [--queries 1406]
[--model minilm] [--batch-size 64] [--words 100]`.

Builds an ArguAna-sized synthetic BEIR folder (seeded random English-like texts of --words words,
every query also a corpus document, as in ArguAna) in a temporary folder, then evaluates it twice
with the same model in one process: cold (corpus encoded, cache written) and warm (corpus read from
the on-disk cache; only the queries are encoded). Prints encode throughput (texts/s), search time
and the warm / cold ratio of the whole evaluation. The metric values are meaningless here (random
texts); this measures time only. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np


def build(folder: Path, n_docs: int, n_queries: int, words: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = ("argument state people government should would policy because evidence country public right law "
             "children school health money tax freedom society economy moral harm benefit risk cost market "
             "education animals energy climate war vote citizens rights security privacy trade").split()
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(rng.choice(vocab, words))}) + "\n")
    qs = rng.choice(n_docs, n_queries, replace=False)
    with open(folder / "queries.jsonl", "w") as f:
        for q in qs:
            f.write(json.dumps({"_id": f"d{q}", "text": f"query {q}"}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in qs:
            f.write(f"d{q}\td{(q + 1) % n_docs}\t1\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--docs", type=int, default=8674)
    ap.add_argument("--queries", type=int, default=1406)
    ap.add_argument("--words", type=int, default=100, help="words per document (ArguAna averages about 160)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()

    import torch

    from actlab.models.retrieval import EvalSet, load_encoder
    from actlab.models.text_data import read_beir
    from actlab.train.loop import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ACTLAB_CACHE_DIR"] = str(Path(tmp) / "cache")
        folder = Path(tmp) / "beir"
        build(folder, args.docs, args.queries, args.words)
        es = EvalSet.from_beir(read_beir(folder, "test"))
        enc = load_encoder(args.model)
        t0 = time.perf_counter()
        cold = es.evaluate(enc, device, args.batch_size, progress=False)
        t1 = time.perf_counter()
        warm = es.evaluate(enc, device, args.batch_size, progress=False)
        t2 = time.perf_counter()
    n_texts = len(es.doc_ids) + len(es.query_ids)
    print(f"{args.model} on {device} ({cold['dtype']}), {len(es.doc_ids)} docs x {len(es.query_ids)} queries, "
          f"{args.words} words/doc, max length {enc.max_length}, batch {args.batch_size}")
    print(f"cold: encode {cold['encode_s']:.2f}s ({n_texts / cold['encode_s']:.0f} texts/s), search {cold['search_s']:.3f}s, "
          f"total {t1 - t0:.2f}s")
    print(f"warm: encode {warm['encode_s']:.2f}s (corpus from cache: {warm['corpus_from_cache']}), "
          f"search {warm['search_s']:.3f}s, total {t2 - t1:.2f}s")
    print(f"warm / cold total: {(t2 - t1) / (t1 - t0):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
