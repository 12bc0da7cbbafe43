import pytest
import torch
from torch import nn

from actlab import UserError
from actlab.models.biencoder import (PRESETS, BiEncoder, TokenCache, backbone_activations, build_head, head_activations,
                            load_backbone, parse_head_spec)


@pytest.fixture(scope="module")
def tiny():
    return load_backbone("tiny", seed=0)


@pytest.mark.parametrize("variant, layers", [
    ("with_relu", [nn.Linear, nn.ReLU]),
    ("without_relu", [nn.Linear]),
    ("with_layernorm", [nn.Linear, nn.LayerNorm]),
    ("with_layernorm_relu", [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear]),
    ("without_layernorm", [nn.Linear, nn.ReLU, nn.Linear]),
])
def test_presets_build_the_documented_layers(variant, layers):
    head = build_head(variant, 16, 8)
    assert [type(m) for m in head] == layers
    assert head(torch.randn(3, 16)).shape == (3, 8)


def test_presets_are_distinct():
    assert len(set(PRESETS.values())) == len(PRESETS) == 5


def test_spec_with_any_registry_activation_and_params():
    head = build_head("linear1,layernorm,leaky_relu:alpha=0.2,linear2", 6, 4)
    act = head[2]
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
    assert act.actlab_name == "leaky_relu" and act.actlab_params == {"alpha": 0.2}
    assert parse_head_spec(" linear1 , GELU ") == [("linear", {}), ("gelu", {})]


@pytest.mark.parametrize("spec, problem", [
    ("", "empty"),
    ("linear1,,relu", "empty item"),
    ("linear1,wiggle", "'wiggle' is not"),
    ("linear1,softmax", "'softmax' is not"),
    ("relu,layernorm", "at least one linear"),
    ("linear1,leaky_relu:alpha=9", "outside"),
    ("linear1,leaky_relu:beta=1", "no parameter 'beta'"),
    ("linear1:x=1", "only activations take parameters"),
])
def test_bad_head_specs_are_user_errors(spec, problem):
    with pytest.raises(UserError, match=problem):
        parse_head_spec(spec)


def test_biencoder_pooling_and_pair_classifier(tiny):
    backbone, tok = tiny
    cache = TokenCache(tok, ["the cat sat", "a much longer sentence about dogs and cats", "the cat sat"], 32)
    assert len(cache.texts) == 2  # each distinct text tokenised once
    ids, mask = cache.batch(cache.ids(["the cat sat", "a much longer sentence about dogs and cats"]), "cpu")
    for pooling in ("cls", "mean"):
        model = BiEncoder(backbone, "with_layernorm_relu", pooling=pooling, head_dim=12)
        emb = model.encode(ids, mask)
        assert emb.shape == (2, 12)
        assert model.pair_logits(emb, emb.flip(0)).shape == (2, 2)
    # Mean pooling ignores padding: a text encodes the same alone and padded in a batch.
    model = BiEncoder(backbone, "without_relu", pooling="mean").eval()
    alone = model.encode(*cache.batch(cache.ids(["the cat sat"]), "cpu"))
    assert torch.allclose(alone[0], model.encode(ids, mask)[0], atol=1e-5)
    with pytest.raises(UserError, match="pooling"):
        BiEncoder(backbone, pooling="max")


def test_freeze_backbone_and_activation_lookup(tiny):
    backbone, _ = tiny
    model = BiEncoder(backbone, "with_layernorm_relu", freeze_backbone=True)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert list(head_activations(model)) == ["head.2"]
    acts = backbone_activations(model)
    assert list(acts) == ["backbone.layer0.ffn", "backbone.layer1.ffn"] and all(n == "gelu" for _, n in acts.values())
    for p in model.backbone.parameters():
        p.requires_grad_(True)


def test_missing_backbone_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nothing-here"):
        load_backbone(str(tmp_path / "nothing-here"))
