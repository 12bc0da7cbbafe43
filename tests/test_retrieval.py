import io
import json
import math
import zipfile

import numpy as np
import pytest
import pytrec_eval
import torch

from actlab import UserError
from actlab.cli import main
from actlab.models.retrieval import (EvalSet, evaluate_run, exact_search, load_encoder, trec_ranking,
                            training_eval_set)
from actlab.models.text_data import load_pairs, read_beir, split_by_topic

SUBJECTS = ["nuclear power", "school uniforms", "the death penalty", "zoos", "homework", "violent video games",
            "a sugar tax", "compulsory voting", "space exploration", "animal testing", "social media for children",
            "genetically modified crops", "a four-day working week", "rent control", "public libraries", "tipping"]
REASONS = ["it saves money in the long run", "it protects the most vulnerable people",
           "the evidence from other countries is clear", "it gives people more freedom"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("ACTLAB_CACHE_DIR", str(d))
    return d


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def near_copy_beir(folder, ghost=False):
    """ArguAna's shape: every query is also a corpus document (same id) and its relevant
    counter-argument is a near-copy of it; other documents argue about the same subjects."""
    folder.mkdir()
    (folder / "qrels").mkdir()
    corpus, queries, qrels = [], [], []
    for i, s in enumerate(SUBJECTS):
        q = f"Governments should support {s} because {REASONS[i % 4]}."
        qid, cid = f"test-debate{i}-pro01a", f"test-debate{i}-con01a"
        corpus += [{"_id": qid, "title": "", "text": q},
                   {"_id": cid, "title": "", "text": q.replace("should support", "should never support")},
                   {"_id": f"test-debate{i}-pro02a", "title": f"On {s}",
                    "text": f"Critics of {s} worry about the cost, but {REASONS[(i + 1) % 4]}."}]
        queries.append({"_id": qid, "text": q})
        qrels.append(f"{qid}\t{cid}\t1")
    if ghost:
        qrels.append("test-debate0-pro01a\tno-such-document\t1")
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return folder


# -- metrics against trec_eval ---------------------------------------------------------------
def reference(qrels, run):
    """pytrec_eval (trec_eval itself, as BEIR uses it). trec_eval's recip_rank has no cut-off, so
    MRR@10 is recip_rank over each query's first 10 documents in trec_eval's order."""
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.100"})
    full = ev.evaluate({q: r for q, r in run.items() if r})
    top10 = {q: {d: r[d] for d in trec_ranking(r)[:10]} for q, r in run.items() if r}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    out = {}
    for q in qrels:
        m = full.get(q, {})
        out[q] = {"ndcg@10": m.get("ndcg_cut_10", 0.0), "recall@100": m.get("recall_100", 0.0),
                  "map@100": m.get("map_cut_100", 0.0), "mrr@10": rr.get(q, {}).get("recip_rank", 0.0)}
    return out


def test_hand_built_run_has_the_known_answers_and_matches_trec_eval():
    qrels = {
        "q1": {"d1": 1},                     # relevant at rank 2
        "q2": {"d1": 2, "d2": 1, "d9": 0},   # graded; d9 judged non-relevant
        "q3": {"d5": 1},                     # relevant only at rank 11: outside the @10 cuts
        "q4": {"d1": 1, "d2": 1},            # tie in score: trec_eval orders by doc id, descending
        "q5": {"d7": 1},                     # the system returned nothing
    }
    run = {
        "q1": {"d3": 0.9, "d1": 0.8, "d2": 0.1},
        "q2": {"d2": 0.9, "d1": 0.5, "d9": 0.7},
        "q3": {f"x{i:02d}": 1.0 - i / 100 for i in range(10)} | {"d5": 0.5},
        "q4": {"d0": 0.5, "d2": 0.5, "d1": 0.1},
        "q5": {},
    }
    ours = evaluate_run(qrels, run, per_query=True)["per_query"]
    # Worked by hand: gain = grade, discount log2(rank + 1).
    assert ours["q1"] == pytest.approx({"ndcg@10": 1 / math.log2(3), "recall@100": 1.0, "mrr@10": 0.5, "map@100": 0.5})
    idcg = 2 + 1 / math.log2(3)
    assert ours["q2"]["ndcg@10"] == pytest.approx((1 + 2 / math.log2(4)) / idcg)
    assert ours["q2"]["map@100"] == pytest.approx((1 + 2 / 3) / 2)
    assert ours["q3"] == pytest.approx({"ndcg@10": 0.0, "recall@100": 1.0, "mrr@10": 0.0, "map@100": 1 / 11})
    assert trec_ranking(run["q4"]) == ["d2", "d0", "d1"]
    assert ours["q4"]["mrr@10"] == 1.0 and ours["q5"]["ndcg@10"] == 0.0
    ref = reference(qrels, run)
    for q in qrels:
        assert ours[q] == pytest.approx(ref[q], abs=1e-9), q
    mean = evaluate_run(qrels, run)
    assert mean["ndcg@10"] == pytest.approx(np.mean([ref[q]["ndcg@10"] for q in qrels]))


def test_random_runs_with_ties_match_trec_eval():
    rng = np.random.default_rng(7)
    docs = [f"doc{i:03d}" for i in range(150)]
    qrels, run = {}, {}
    for q in range(40):
        rel = rng.choice(150, rng.integers(1, 8), replace=False)
        qrels[f"q{q}"] = {docs[d]: int(rng.integers(0, 3)) for d in rel}
        qrels[f"q{q}"][docs[rel[0]]] = int(rng.integers(1, 3))  # at least one relevant
        # Rounded scores make many ties; 120 of 150 retrieved, so the @100 cuts bite.
        run[f"q{q}"] = {docs[d]: float(np.round(rng.random(), 1)) for d in rng.choice(150, 120, replace=False)}
    ours = evaluate_run(qrels, run, per_query=True)["per_query"]
    ref = reference(qrels, run)
    for q in qrels:
        assert ours[q] == pytest.approx(ref[q], abs=1e-9), q


# -- exact search ----------------------------------------------------------------------------
def test_chunked_search_equals_the_full_matrix_and_drops_self():
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(23, 16, generator=g), torch.randn(101, 16, generator=g)
    own = torch.full((23,), -1, dtype=torch.long)
    own[::2] = torch.arange(0, 23, 2) * 4  # every other query is itself a document
    s_full = torch.nn.functional.normalize(q) @ torch.nn.functional.normalize(d).T
    s_full[torch.nonzero(own >= 0).flatten(), own[own >= 0]] = -math.inf
    want_s, want_i = s_full.topk(30, dim=1)
    got_s, got_i = exact_search(q, d, k=30, self_index=own, query_chunk=5, doc_chunk=7)
    assert torch.equal(got_i, want_i) and torch.allclose(got_s, want_s)
    assert not any(int(own[i]) in got_i[i].tolist() for i in range(23))
    # k larger than the corpus: every document once, the excluded one as -inf at the end.
    s, i = exact_search(q[:2], d[:4], k=10, self_index=torch.tensor([1, -1]), doc_chunk=3)
    assert s.shape == (2, 4) and math.isinf(s[0, -1]) and sorted(i[1].tolist()) == [0, 1, 2, 3]


# -- end to end with the bundled MiniLM ------------------------------------------------------
def run_json(capsys, argv):
    rc = main(["eval", "biencoder", "--no-progress", "--json", *argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out), captured.err


def test_zero_shot_minilm_on_arguana_shaped_data(tmp_path, capsys):
    folder = near_copy_beir(tmp_path / "beir", ghost=True)
    out, err = run_json(capsys, ["--data", str(folder), "--model", "minilm"])
    assert out["ndcg@10"] >= 0.95 and out["mrr@10"] >= 0.95 and out["recall@100"] == 1.0
    assert out["self_excluded"] is True and out["queries_in_corpus"] == len(SUBJECTS)
    assert out["n_queries"] == len(SUBJECTS) and out["n_docs"] == 3 * len(SUBJECTS)
    assert out["skipped_qrels"] == 1 and "no-such-document" in err and "test.tsv:18" in err
    assert out["model"] == "minilm" and out["pooling"] == "mean" and out["corpus_from_cache"] is False
    assert set(out) >= {"ndcg@10", "recall@100", "mrr@10", "map@100", "n_queries", "n_docs", "skipped_qrels",
                        "self_excluded", "model", "encode_s", "search_s"}
    # Without the exclusion every query finds itself first: the trap BEIR's ignore_identical_ids avoids.
    kept, _ = run_json(capsys, ["--data", str(folder), "--model", "minilm", "--keep-self"])
    assert kept["self_excluded"] is False and kept["corpus_from_cache"] is True
    assert kept["mrr@10"] <= 0.5 and kept["ndcg@10"] <= 1 / math.log2(3) + 1e-6 < out["ndcg@10"]
    # The human-readable form says which mode was used.
    assert main(["eval", "biencoder", "--no-progress", "--data", str(folder), "--keep-self"]) == 0
    assert "self-matches KEPT" in capsys.readouterr().out


PARAPHRASES = [("nuclear power", "atomic energy plants"), ("school uniforms", "mandatory dress codes for pupils"),
               ("the death penalty", "capital punishment"), ("zoos", "keeping wild animals in captivity"),
               ("homework", "assignments pupils complete at home"), ("a sugar tax", "levies on sweet fizzy drinks"),
               ("compulsory voting", "fining citizens who skip elections"), ("space exploration", "missions to Mars and the Moon"),
               ("animal testing", "experiments on laboratory mice"), ("rent control", "caps on what landlords may charge")]


def test_paraphrased_counters_separate_a_trained_encoder_from_random_weights(tmp_path, capsys):
    """The near-copy check is passed by any encoder that sees shared tokens; here the counter
    shares no content word with its query, so only an encoder that knows meaning finds it."""
    folder = tmp_path / "para"
    (folder / "qrels").mkdir(parents=True)
    corpus, qrels = [], []
    for i, (s, para) in enumerate(PARAPHRASES):
        corpus += [{"_id": f"q{i}", "text": f"We should ban {s} today."}, {"_id": f"c{i}", "text": f"Banning {para} would be a mistake."}]
        qrels.append(f"q{i}\tc{i}\t1")
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", corpus[::2])
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    minilm, _ = run_json(capsys, ["--data", str(folder), "--model", "minilm"])
    tiny, _ = run_json(capsys, ["--data", str(folder), "--model", "tiny"])
    assert minilm["ndcg@10"] >= 0.45 and tiny["ndcg@10"] <= 0.2


def test_zero_shot_minilm_embeds_exactly_as_sentence_transformers():
    """MTEB's 0.5017 was measured through sentence-transformers (mean pooling, 256 tokens,
    normalised); our encoder must give the same vectors, long texts (truncated) included."""
    from sentence_transformers import SentenceTransformer

    from actlab.models.biencoder import minilm_path
    from actlab.models.retrieval import encode_texts

    texts = ["Governments should support zoos.", "ok", "An argument that runs on and on. " * 80]
    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    enc = load_encoder("minilm")
    ours = torch.nn.functional.normalize(encode_texts(enc.module, enc.tokenizer, texts, torch.device("cpu"),
                                                      batch_size=2, max_length=enc.max_length, progress=False))
    assert enc.max_length == 256 and torch.allclose(ours, ref.cpu(), atol=1e-5)


def test_embedding_cache_is_keyed_by_weights_corpus_and_length(tmp_path, cache_dir):
    data = read_beir(near_copy_beir(tmp_path / "beir"), "test")
    es = EvalSet.from_beir(data)
    enc = load_encoder("tiny", max_length=32)
    first = es.evaluate(enc, torch.device("cpu"), progress=False)
    again = es.evaluate(enc, torch.device("cpu"), progress=False)
    assert (first["corpus_from_cache"], again["corpus_from_cache"]) == (False, True)
    assert {m: again[m] for m in ("ndcg@10", "map@100")} == {m: first[m] for m in ("ndcg@10", "map@100")}
    files = list((cache_dir / "embeddings").glob("*.pt"))
    assert len(files) == 1
    # Another max length, another corpus or other weights: a new entry, never a stale one.
    assert es.evaluate(load_encoder("tiny", max_length=16), torch.device("cpu"), progress=False)["corpus_from_cache"] is False
    sub = EvalSet.from_beir(data, max_docs=20)
    assert sub.evaluate(enc, torch.device("cpu"), progress=False)["corpus_from_cache"] is False
    with torch.no_grad():
        next(enc.module.parameters()).add_(0.01)
    from actlab.models.retrieval import weights_fingerprint
    enc.fingerprint = weights_fingerprint(enc.module)
    assert es.evaluate(enc, torch.device("cpu"), progress=False)["corpus_from_cache"] is False
    assert len(list((cache_dir / "embeddings").glob("*.pt"))) == 4
    # A torn cache file is re-encoded and replaced, not an error.
    files[0].write_bytes(b"not a torch file")
    fresh = es.evaluate(load_encoder("tiny", max_length=32), torch.device("cpu"), progress=False)
    assert fresh["corpus_from_cache"] is False and fresh["ndcg@10"] == first["ndcg@10"]


def test_max_docs_keeps_every_relevant_document(tmp_path):
    data = read_beir(near_copy_beir(tmp_path / "beir"), "test")
    a, b = EvalSet.from_beir(data, max_docs=20, seed=3), EvalSet.from_beir(data, max_docs=20, seed=3)
    assert len(a.doc_ids) == 20 and a.doc_ids == b.doc_ids
    assert {d for rels in a.qrels.values() for d in rels} <= set(a.doc_ids)
    assert EvalSet.from_beir(data, max_docs=20, seed=4).doc_ids != a.doc_ids
    # Fewer slots than relevant documents: the relevant ones still all stay.
    assert len(EvalSet.from_beir(data, max_docs=3).doc_ids) == len(SUBJECTS)
    q = EvalSet.from_beir(data, max_queries=5, seed=1)
    assert len(q.query_ids) == 5 and set(q.qrels) == set(q.query_ids)


# -- checkpoints and training ----------------------------------------------------------------
def test_training_logs_ndcg_and_the_checkpoint_evaluates_to_the_same_figure(tmp_path, capsys):
    from actlab.store.runs import RunStore
    from actlab.train.biencoder import train_biencoder

    folder = near_copy_beir(tmp_path / "beir", ghost=True)
    ckpts = tmp_path / "ckpt"
    name = train_biencoder({"backbone": "tiny", "data": str(folder), "epochs": 2, "batch_size": 4, "lr": 1e-3,
                            "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(ckpts), "name": "bt",
                            "max_length": 32, "progress": False})
    assert "skipped 1 qrels line" in capsys.readouterr().err
    df, _ = RunStore(tmp_path / "runs").open(name).scalars(keys=["ndcg@10/test"])
    assert df["epoch"].tolist() == [1.0, 2.0] and df["value"].between(0, 1).all()
    # The same held-out queries against the full corpus, from the saved weights, give the logged value.
    pairs = load_pairs(folder)
    _, test = split_by_topic(pairs, 0.2, seed=0)
    es = training_eval_set(str(folder), pairs, test)
    assert len(es.doc_ids) == 3 * len(SUBJECTS) and set(es.query_ids) == set(test["query_id"])
    enc = load_encoder(checkpoint="bt", checkpoints_dir=str(ckpts))
    assert enc.max_length == 32 and enc.pooling == "cls"
    assert es.evaluate(enc, torch.device("cpu"), progress=False)["ndcg@10"] == pytest.approx(df["value"].iloc[-1], abs=1e-6)
    out, _ = run_json(capsys, ["--data", str(folder), "--checkpoint", "bt", "--checkpoints-dir", str(ckpts)])
    assert out["model"] == "checkpoint:bt" and 0 <= out["ndcg@10"] <= 1 and out["n_queries"] == len(SUBJECTS)


def test_pairs_get_a_beir_view_shaped_like_arguana():
    import pandas as pd

    pairs = pd.DataFrame({"topic": ["a", "a", "b", "c"], "argument": ["x1", "x2", "y1", "z1"],
                          "counter": ["cx1", "cx2", "cy1", "cz1"]})
    es = EvalSet.from_pairs(pairs, pairs[pairs["topic"] != "a"])
    assert len(es.doc_ids) == 8 and es.query_texts == ["y1", "z1"]
    by_text = dict(zip(es.doc_texts, es.doc_ids))
    # A query's id is its own document's id (so self-exclusion applies); relevant = its counter.
    assert es.query_ids == [by_text["y1"], by_text["z1"]]
    assert es.qrels == {by_text["y1"]: {by_text["cy1"]: 1}, by_text["z1"]: {by_text["cz1"]: 1}}


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("break_it, args, problem", [
    (lambda f: None, ["--split", "dev"], "unknown split 'dev': no qrels/dev.tsv (splits here: test)"),
    (lambda f: (f / "corpus.jsonl").unlink(), [], "corpus.jsonl is missing"),
    (lambda f: (f / "queries.jsonl").write_text('{"_id": "q", "text": "a"}\n{oops\n'), [],
     "queries.jsonl: line 2 is not valid JSON"),
    (lambda f: (f / "qrels" / "test.tsv").write_text("q\tc\n"), [], "test.tsv: line 1: expected query-id"),
    (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tc\tx\n"), [], "score 'x' is not a number"),
    (lambda f: (f / "corpus.jsonl").write_bytes((f / "corpus.jsonl").read_bytes() + b"\xff\xfe\n"), [],
     "corpus.jsonl: line 49 is not UTF-8 text"),
    (lambda f: (f / "qrels" / "test.tsv").write_bytes(b"q\xff\tc\t1\n"), [], "test.tsv: not UTF-8 text"),
    (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tc\tinf\n"), [],
     "score 'inf' is not a number"),
    (lambda f: (f / "corpus.jsonl").write_text('{"_id": "d", "text": null}\n'), [], "'text' and 'title' must be strings"),
    (lambda f: None, ["--batch-size", "0"], "argument --batch-size: expected a positive integer"),
    (lambda f: None, ["--batch-size", "-1"], "argument --batch-size: expected a positive integer"),
    (lambda f: None, ["--max-docs", "0"], "argument --max-docs: expected a positive integer"),
    (lambda f: None, ["--max-docs", "-5"], "argument --max-docs: expected a positive integer"),
    (lambda f: None, ["--checkpoint", "ghost"], "no checkpoint at"),
    (lambda f: None, ["--checkpoint", "../x"], "run name"),
    (lambda f: None, ["--model", "./no/such/model"], "backbone folder not found"),
    (lambda f: None, ["--dtype", "float16", "--device", "cpu"], "--dtype float16 needs CUDA"),
])
def test_bad_input_is_one_line_error_exit_2(tmp_path, capsys, break_it, args, problem):
    folder = near_copy_beir(tmp_path / "beir")
    break_it(folder)
    rc = main(["eval", "biencoder", "--no-progress", "--data", str(folder), "--checkpoints-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and problem in err and len(err.strip().splitlines()) == 1


def test_missing_folder_is_an_error(tmp_path, capsys):
    rc = main(["eval", "biencoder", "--data", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope: no such folder" in err
    (tmp_path / "corpus.jsonl").write_text("{}\n")
    rc = main(["eval", "biencoder", "--data", str(tmp_path / "corpus.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "corpus.jsonl: a file, not a folder" in err and len(err.strip().splitlines()) == 1


def test_bad_checkpoint_file_is_an_error(tmp_path, capsys):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "odd.pt")
    with pytest.raises(UserError, match="not a bi-encoder checkpoint"):
        load_encoder(checkpoint=str(tmp_path / "odd.pt"))
    (tmp_path / "torn.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_encoder(checkpoint=str(tmp_path / "torn.pt"))


# -- the public ArguAna archive, never actually downloaded in tests -------------------------------
def fake_archive(src, members=None):
    buf = io.BytesIO()
    src = near_copy_beir(src)
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                z.write(p, "arguana/" + str(p.relative_to(src)))
        for name, data in (members or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def serve(monkeypatch, blob=None, error=None):
    import actlab.models.text_data as td

    calls = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        if error:
            raise error
        return Response(blob)

    monkeypatch.setattr(td, "urlopen", fake_urlopen)
    return calls


def test_arguana_offline_says_where_to_put_the_folder(tmp_path, capsys, monkeypatch, cache_dir):
    from urllib.error import URLError

    monkeypatch.chdir(tmp_path)
    calls = serve(monkeypatch, error=URLError("Name or service not known"))
    rc = main(["eval", "biencoder", "--data", "arguana"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and calls[0].endswith("/BEIR/datasets/arguana.zip")
    assert "cannot download" in err and f"{cache_dir / 'beir' / 'arguana'}/corpus.jsonl" in err and "--data /path/to/arguana" in err
    # Training reads the same data option and stops the same way, before any model loads.
    rc = main(["train", "biencoder", "--backbone", "tiny", "--data", "arguana", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: arguana: cannot download") and len(calls) == 2


def test_arguana_archive_is_checked_then_unpacked_once(tmp_path, monkeypatch, cache_dir):
    import hashlib

    import actlab.models.text_data as td

    monkeypatch.chdir(tmp_path)
    blob = fake_archive(tmp_path / "src")
    serve(monkeypatch, blob=blob)
    with pytest.raises(UserError, match="MD5 .* expected 8ad3e3c2a5867cdced806d6503f29b99; nothing was kept"):
        td.beir_folder("arguana")
    assert not (cache_dir / "beir" / "arguana").exists()
    monkeypatch.setitem(td.BEIR_ARCHIVES, "arguana", (td.BEIR_ARCHIVES["arguana"][0], hashlib.md5(blob).hexdigest()))
    folder = td.beir_folder("arguana")
    assert folder == cache_dir / "beir" / "arguana" and len(read_beir(folder, "test").qrels) == len(SUBJECTS)
    calls = serve(monkeypatch, error=AssertionError("a second call must not download"))
    assert td.beir_folder("arguana") == folder and calls == []
    bad = fake_archive(tmp_path / "src2", {"../evil.txt": "x"})
    monkeypatch.setitem(td.BEIR_ARCHIVES, "arguana", (td.BEIR_ARCHIVES["arguana"][0], hashlib.md5(bad).hexdigest()))
    serve(monkeypatch, blob=bad)
    monkeypatch.setenv("ACTLAB_CACHE_DIR", str(tmp_path / "other-cache"))
    with pytest.raises(UserError, match="unsafe"):
        td.beir_folder("arguana")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "other-cache" / "beir" / "arguana").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_precision_agrees_with_cpu(tmp_path):
    data = read_beir(near_copy_beir(tmp_path / "beir"), "test")
    es = EvalSet.from_beir(data)
    enc = load_encoder("minilm")
    cpu = es.evaluate(enc, torch.device("cpu"), progress=False, use_cache=False)
    gpu = es.evaluate(enc, torch.device("cuda"), progress=False, use_cache=False)
    assert gpu["dtype"] in ("bfloat16", "float16") and gpu["ndcg@10"] >= 0.95
    assert gpu["ndcg@10"] == pytest.approx(cpu["ndcg@10"], abs=0.02)
