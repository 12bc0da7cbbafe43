"""Variant and seed from file and folder names: with_relu_seed2.log, without_layernorm/run-3/metrics.csv."""
from __future__ import annotations

import re
from pathlib import PurePosixPath


def _stem(name: str) -> str:
    p = PurePosixPath(name.replace("\\", "/"))
    stem = p.name
    if "tfevents" in stem:
        # events.out.tfevents.<time>.<host> says nothing; the folder is the run.
        return str(p.parent) if str(p.parent) != "." else stem
    for ext in (".log", ".txt", ".jsonl", ".json", ".csv", ".tsv", ".out"):
        if stem.lower().endswith(ext):
            return str(p.parent / stem[: -len(ext)]) if str(p.parent) != "." else stem[: -len(ext)]
    return str(p)


_SEED_WHOLE = re.compile(r"^(?:seed|run|rep|trial|s|r)[_\-=]?(\d+)$|^(\d+)$", re.I)
_SEED_SUFFIX = re.compile(r"^(?P<variant>.+?)[_\-.](?:seed|run|rep|trial|s)[_\-=]?(?P<seed>\d+)$", re.I)
# Names that say nothing about the variant: the file inside a run folder.
_GENERIC_NAMES = {"metrics", "log", "logs", "train", "training", "trainer_state", "history", "events",
                  "output", "stdout", "results", "progress", "scalars", "version_0", "lightning_logs"}


def infer_variant_seed(path: str) -> tuple[str, int | None]:
    parts = [p for p in _stem(path).replace("\\", "/").split("/") if p and p not in (".", "..")]
    parts = [p for p in parts if not p.startswith("events.out.tfevents")]
    seed, variant = None, None
    for part in reversed(parts):
        low = part.lower()
        if low in _GENERIC_NAMES or re.fullmatch(r"version_\d+", low):
            continue
        m = _SEED_WHOLE.match(part)
        if m and seed is None:
            seed = int(m.group(1) or m.group(2))
            continue
        m = _SEED_SUFFIX.match(part)
        if m:
            if seed is None:
                seed = int(m.group("seed"))
            variant = m.group("variant")
        else:
            variant = part
        break
    return (variant or (parts[-1] if parts else path)), seed
