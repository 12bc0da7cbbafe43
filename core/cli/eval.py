"""`actlab eval biencoder`: full-corpus retrieval on a BEIR folder."""
from __future__ import annotations

import json

from .. import argtypes as T
from ..models.retrieval import METRICS, EvalSet, beir_folder, load_encoder, pick_dtype, read_beir
from ..errors import UserError


def add_cli(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model on a benchmark")
    s = p.add_subparsers(dest="task", required=True)
    b = s.add_parser("biencoder", help="full-corpus retrieval on a BEIR folder (nDCG@10, Recall@100, MRR@10, MAP@100)")
    b.add_argument("--data", required=True, help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or arguana")
    b.add_argument("--split", default="test")
    who = b.add_mutually_exclusive_group()
    who.add_argument("--checkpoint", metavar="RUN", help="a run name from `train biencoder` (or a path to its last.pt)")
    who.add_argument("--model", help="minilm (default, offline), tiny, or a Hugging Face name / folder, zero-shot")
    b.add_argument("--checkpoints-dir", default=None, help="where RUN/last.pt lives (default: checkpoints/)")
    b.add_argument("--pooling", choices=["cls", "mean"], default=None, help="zero-shot pooling (default mean)")
    b.add_argument("--max-length", type=T.positive_int, default=None, help="tokens per text (default 256, or the checkpoint's)")
    b.add_argument("--batch-size", type=T.positive_int, default=64)
    b.add_argument("--max-docs", type=T.positive_int, default=None, help="a seeded subset of N documents keeping every relevant one")
    b.add_argument("--max-queries", type=T.positive_int, default=None, help="a seeded subset of N queries")
    b.add_argument("--seed", type=T.non_negative_int, default=0, help="seed of the --max-docs / --max-queries subsets")
    b.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    b.add_argument("--dtype", default="auto", help="auto (bf16/fp16 on CUDA, float32 on CPU) | float32 | float16 | bfloat16")
    b.add_argument("--keep-self", action="store_true", help="do not drop a retrieved document whose id is the query id")
    b.add_argument("--no-cache", dest="cache", action="store_false", help="neither read nor write cached corpus embeddings")
    b.add_argument("--no-progress", dest="progress", action="store_false")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cli_eval)


def _cli_eval(args) -> int:
    from ..devices import pick_device

    for flag in ("batch_size", "max_length", "max_docs", "max_queries"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {v}")
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    data = read_beir(beir_folder(args.data), args.split)
    data.warn()
    eval_set = EvalSet.from_beir(data, max_queries=args.max_queries, max_docs=args.max_docs, seed=args.seed)
    encoder = load_encoder(args.model, args.checkpoint, args.checkpoints_dir, args.pooling, args.max_length)
    out = eval_set.evaluate(encoder, device, args.batch_size, dtype, exclude_self=not args.keep_self,
                            use_cache=args.cache, progress=args.progress)
    out = {"data": str(data.folder), "split": args.split, **out}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        mode = "self-matches dropped (BEIR ignore_identical_ids)" if out["self_excluded"] else "self-matches KEPT (--keep-self)"
        print(f"{out['model']} on {out['data']} [{args.split}]: {out['n_queries']} queries x {out['n_docs']} documents, {mode}")
        print("  " + "  ".join(f"{m} {out[m]:.4f}" for m in METRICS))
        print(f"  skipped qrels {out['skipped_qrels']}, skipped queries {out['skipped_queries']}; "
              f"encode {out['encode_s']:.1f}s{' (corpus from cache)' if out['corpus_from_cache'] else ''}, "
              f"search {out['search_s']:.2f}s on {out['device']} ({out['dtype']})")
    return 0
