"""Relufied backbone FFNs (--backbone-activation, --probe-backbone) and the frozen-backbone feature cache."""
import json

import pytest
import torch

from actlab.cli import main
from actlab.store.runs import RunStore
from tests.test_train_biencoder import TINY, write_pairs


@pytest.fixture(autouse=True)
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLAB_CHECKPOINTS_DIR", str(tmp_path / "ckpt"))
    monkeypatch.setenv("ACTLAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


def show(runs, name, capsys):
    capsys.readouterr()
    assert main(["runs", "show", name, "--runs-dir", str(runs), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_set_backbone_activation_keeps_weights_and_changes_the_ffn():
    from actlab.models.biencoder import load_backbone, set_backbone_activation

    model, _ = load_backbone("tiny", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert set_backbone_activation(model, "leaky_relu:alpha=0.2") == 2
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    act = model.encoder.layer[1].intermediate.intermediate_act_fn
    assert act.actlab_name == "leaky_relu" and act.actlab_params["alpha"] == pytest.approx(0.2)
    assert torch.allclose(act(torch.tensor([-1.0, 2.0])), torch.tensor([-0.2, 2.0]))


def test_relufied_tiny_bert_is_sparse_in_runs_show(tmp_path, pairs, capsys):
    runs = tmp_path / "runs"
    common = [*TINY, "--data", str(pairs), "--runs-dir", str(runs), "--max-steps", "4", "--probe-backbone",
              "--no-checkpoint", "--no-progress"]
    assert main(["train", "biencoder", *common, "--name", "relu", "--backbone-activation", "relu"]) == 0
    assert main(["train", "biencoder", *common, "--name", "gelu"]) == 0
    relu, gelu = show(runs, "relu", capsys), show(runs, "gelu", capsys)
    for layer in ("backbone.layer0.ffn", "backbone.layer1.ffn"):
        assert relu["last"][f"zero_frac/{layer}"] >= 0.2
        assert gelu["last"][f"zero_frac/{layer}"] < 0.01  # GELU is exactly 0 only at x = 0
        assert 0 <= relu["last"][f"dead/{layer}"] <= 1
    assert relu["config"]["backbone_activation"] == "relu"
    layers = RunStore(runs).open("relu").meta["layers"]
    assert layers["backbone.layer0.ffn"]["activation"] == "relu"
    assert RunStore(runs).open("gelu").meta["layers"]["backbone.layer0.ffn"]["activation"] == "gelu"


@pytest.mark.parametrize("value, problem", [("softmax", "not a scalar registry activation"),
                                            ("bogus", "not a scalar registry activation"),
                                            ("leaky_relu:alpha=9", "outside")])
def test_bad_backbone_activation_is_one_line_error(tmp_path, pairs, capsys, value, problem):
    rc = main(["train", "biencoder", *TINY, "--data", str(pairs), "--runs-dir", str(tmp_path / "runs"),
               "--backbone-activation", value])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def _head_outputs(ckpt_path, probe):
    from actlab.models.biencoder import build_head

    sd = torch.load(ckpt_path, weights_only=True)["model"]
    assert not any(k.startswith("backbone.") for k in sd)  # a frozen backbone is rebuilt, not stored
    head = build_head("with_layernorm_relu", 32)
    head.load_state_dict({k[len("head."):]: v for k, v in sd.items() if k.startswith("head.")})
    return head(probe)


def test_cached_and_uncached_frozen_runs_give_the_same_head(tmp_path, pairs, monkeypatch):
    import actlab.train.biencoder as tb
    from actlab.models.biencoder import feature_cache_dir

    # Mean pooling: a random tiny BERT's CLS vector is nearly the same for every text (cosine > 0.99998),
    # so cls-pooled retrieval scores tie to float rounding and their ranks (nDCG) change with the
    # thread count; mean-pooled features differ per text, so ranks compare across routes.
    base = {"backbone": "tiny", "data": str(pairs), "epochs": 2, "batch_size": 8, "lr": 1e-2, "seed": 3,
            "pooling": "mean", "freeze_backbone": True, "runs_dir": str(tmp_path / "runs"), "progress": False}
    tb.train_biencoder({**base, "name": "plain", "feature_cache": False, "checkpoints_dir": str(tmp_path / "a")})
    assert not feature_cache_dir().exists()
    tb.train_biencoder({**base, "name": "fill", "checkpoints_dir": str(tmp_path / "b")})
    assert len(list(feature_cache_dir().glob("*.pt"))) == 1

    # A cache hit never loads the backbone.
    def no_backbone(*a, **k):
        raise AssertionError("backbone loaded on a cache hit")
    monkeypatch.setattr(tb, "load_backbone", no_backbone)
    tb.train_biencoder({**base, "name": "hit", "checkpoints_dir": str(tmp_path / "c")})

    probe = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    outs = [_head_outputs(tmp_path / d / n / "last.pt", probe) for d, n in (("a", "plain"), ("b", "fill"), ("c", "hit"))]
    assert torch.allclose(outs[0], outs[1], atol=1e-4) and torch.allclose(outs[1], outs[2], atol=1e-6)
    store = RunStore(tmp_path / "runs")
    top1 = [store.open(n).last()["acc/top1"] for n in ("plain", "fill", "hit")]
    assert top1[0] == top1[1] == top1[2]
    # nDCG@10 on the BEIR view runs through the cached features too, with the same result every epoch,
    # and it follows the head as it trains (a stale cached route would repeat its first figure).
    ndcg = [store.open(n).scalars(keys=["ndcg@10/test"])[0]["value"].tolist() for n in ("plain", "fill", "hit")]
    assert len(ndcg[0]) == 2 and ndcg[0] == pytest.approx(ndcg[1], abs=1e-6) and ndcg[1] == ndcg[2]
    assert all(0 < v <= 1 for v in ndcg[0]) and ndcg[0][0] != pytest.approx(ndcg[0][1], abs=1e-3)


def test_head_on_cached_features_equals_head_through_the_backbone(tmp_path, pairs):
    """The same model, the same rows: the cached route and the backbone route agree."""
    from actlab.models.biencoder import BiEncoder, TokenCache, load_backbone
    from actlab.models.text_data import load_pairs
    from actlab.train.biencoder import pooled_features

    df = load_pairs(str(pairs))
    texts = list(dict.fromkeys(list(df["argument"]) + list(df["counter"])))
    backbone, tok = load_backbone("tiny", seed=1)
    feats = pooled_features(backbone, tok, texts, "mean", 64, "cpu")
    enc = BiEncoder(backbone, "with_layernorm_relu", "mean", freeze_backbone=True).train()
    assert not enc.backbone.training  # frozen backbone: eval mode, no dropout
    cache = TokenCache(tok, texts, 64)
    rows = torch.tensor([4, 0, 7, 11, 2])
    with torch.no_grad():
        assert torch.allclose(enc.encode(*cache.batch(rows, "cpu")), enc.head(feats[rows]), atol=1e-5)


def test_cached_route_ndcg_follows_the_head_and_leaves_the_model_in_its_mode(pairs, monkeypatch):
    """ndcg_during_training through CachedFeatureEncoder scores the head's current output on the cached
    features (same figure as through the backbone), and leaves the wrapped model's mode alone."""
    import actlab.models.retrieval as R
    from actlab.models.biencoder import BiEncoder, TokenCache, load_backbone
    from actlab.models.text_data import load_pairs, split_by_topic
    from actlab.train.biencoder import CachedFeatureEncoder, FeatureTokenizer, pooled_features

    df = load_pairs(str(pairs))
    _, test = split_by_topic(df, 0.2, seed=0)
    es = R.EvalSet.from_pairs(df, test)
    texts = list(dict.fromkeys(list(df["argument"]) + list(df["counter"])))
    backbone, tok = load_backbone("tiny", seed=1)
    feats = pooled_features(backbone, tok, texts, "mean", 64, "cpu")
    index = TokenCache(None, texts).index
    enc = BiEncoder(backbone, "with_layernorm_relu", "mean", freeze_backbone=True).eval()
    scored = []
    real = R.exact_search
    monkeypatch.setattr(R, "exact_search", lambda q, d, *a, **k: scored.append(q.clone()) or real(q, d, *a, **k))
    cpu = torch.device("cpu")
    qrows = torch.tensor([index[t] for t in es.query_texts])

    def both_routes():
        cached = R.ndcg_during_training(es, CachedFeatureEncoder(enc, feats), FeatureTokenizer(index), cpu, 64)
        with torch.no_grad():
            assert torch.allclose(scored[-1], enc.head(feats[qrows]), atol=1e-6)  # the current head's output
        assert not enc.training and not enc.head.training  # eval before, eval after (not the wrapper's train flag)
        assert cached == pytest.approx(R.ndcg_during_training(es, enc, tok, cpu, 64), abs=1e-6)
        return cached, scored[-2]

    first, q_first = both_routes()
    torch.manual_seed(5)
    for m in enc.head.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    second, q_second = both_routes()
    assert not torch.allclose(q_first, q_second, atol=1e-3) and first != pytest.approx(second, abs=1e-3)
    enc.train()
    R.ndcg_during_training(es, CachedFeatureEncoder(enc, feats), FeatureTokenizer(index), cpu, 64)
    assert enc.head.training and not enc.backbone.training  # train stays train; the frozen backbone stays eval


def test_a_torn_cache_file_is_recomputed(tmp_path, pairs):
    from actlab.models.biencoder import feature_cache_dir
    from actlab.train.biencoder import train_biencoder

    base = {"backbone": "tiny", "data": str(pairs), "epochs": 1, "batch_size": 8, "freeze_backbone": True,
            "runs_dir": str(tmp_path / "runs"), "checkpoint": False, "progress": False}
    train_biencoder({**base, "name": "one"})
    (f,) = feature_cache_dir().glob("*.pt")
    f.write_bytes(b"not a torch file")
    train_biencoder({**base, "name": "two"})
    assert torch.load(f, weights_only=True)["features"].ndim == 2
    store = RunStore(tmp_path / "runs")
    assert store.open("one").last()["acc/top1"] == store.open("two").last()["acc/top1"]


def test_frozen_grid_passes_options_through_and_prints_verdicts(tmp_path, pairs, capsys):
    runs, ckpt, out = tmp_path / "r", tmp_path / "ck", tmp_path / "res" / "grid.json"
    rc = main(["ablate", "biencoder", "--variants", "with_relu,without_relu", "--seeds", "3", "--backbone", "tiny",
               "--data", str(pairs), "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--freeze-backbone",
               "--runs-dir", str(runs), "--checkpoints-dir", str(ckpt), "--grid", "fz", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    store = RunStore(runs)
    for v in ("with_relu", "without_relu"):
        for s in (1, 2, 3):
            name = f"fz-{v}-seed{s}"
            assert store.open(name).config["freeze_backbone"] is True
            assert (ckpt / name / "last.pt").is_file()
    summary = json.loads(out.read_text())
    (c,) = summary["comparisons"]
    assert {c["a"], c["b"]} == {"with_relu", "without_relu"} and summary["metric"] == "acc/top1"
    assert f"{c['a']} vs {c['b']}: diff " in text and f"verdict: {summary['verdict']}" in text
    means = {v["variant"]: v["mean"] for v in summary["variants"]}
    finals = [store.open(f"fz-with_relu-seed{s}").last()["acc/top1"] for s in (1, 2, 3)]
    assert means["with_relu"] == pytest.approx(sum(finals) / 3)
    assert summary["grid"]["machine"]["cpu_count"] >= 1 and summary["grid"]["seeds"] == 3
