"""Argument / counter-argument pairs: JSONL, CSV, a BEIR folder (ArguAna layout) or the bundled demo.

Every loader returns one table with columns `topic`, `argument`, `counter` (strings). The split is
by topic so that no debate leaks from train into test: a counter seen in training under the same
topic would make retrieval look better than it is.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from core import UserError

COLUMNS = ["topic", "argument", "counter"]
DEMO_PATH = Path(__file__).resolve().parent / "assets" / "demo_pairs.jsonl"


class DataError(UserError):
    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def load_pairs(source: str | os.PathLike = "demo") -> pd.DataFrame:
    """`demo`, a .jsonl/.json file, a .csv/.tsv file, or a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)."""
    if str(source) == "demo":
        if not DEMO_PATH.exists():
            raise DataError(DEMO_PATH, "the bundled demo pairs are missing; pass --data PATH")
        return _finish(_read_jsonl_rows(DEMO_PATH), DEMO_PATH)
    path = Path(source)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if path.is_dir():
        return load_beir(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _finish(_read_jsonl_rows(path), path)
    if suffix in (".csv", ".tsv"):
        return _finish(_read_csv_rows(path), path)
    raise DataError(path, f"unknown file type {suffix or '(none)'}; expected .jsonl, .csv, .tsv or a BEIR folder")


def _read_jsonl_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"line {lineno} is not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(path, f"line {lineno} is a JSON {type(obj).__name__}, expected an object")
            rows.append(obj)
    return rows


def _read_csv_rows(path: Path) -> list[dict]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter=delimiter))
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read as CSV ({e})") from None


def _finish(rows: list[dict], path: Path) -> pd.DataFrame:
    if not rows:
        raise DataError(path, "no pairs (the file is empty)")
    missing = [c for c in ("argument", "counter") if c not in rows[0]]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, rows[0])) or 'none'}")
    out = []
    for i, r in enumerate(rows, 1):
        arg, ctr = r.get("argument"), r.get("counter")
        if not isinstance(arg, str) or not isinstance(ctr, str) or not arg.strip() or not ctr.strip():
            raise DataError(path, f"row {i}: 'argument' and 'counter' must be non-empty strings")
        topic = r.get("topic")
        # Without a topic each pair is its own topic: the split still never shares a pair.
        topic = f"pair-{i}" if topic is None or str(topic).strip() == "" else str(topic)
        out.append((topic, arg.strip(), ctr.strip()))
    return pd.DataFrame(out, columns=COLUMNS)


def load_beir(folder: str | os.PathLike, split: str | None = None) -> pd.DataFrame:
    """BEIR ArguAna: queries are arguments, the relevant corpus document is the counter.
    The topic is the id without its last `-pro01a` / `-con02b` part (ArguAna ids name the debate)."""
    folder = Path(folder)
    corpus_p, queries_p, qrels_d = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels"
    for p in (corpus_p, queries_p):
        if not p.is_file():
            raise DataError(folder, f"not a BEIR folder: {p.name} is missing (expected corpus.jsonl, queries.jsonl, qrels/*.tsv)")
    qrel_files = sorted(qrels_d.glob("*.tsv")) if qrels_d.is_dir() else []
    if split:
        qrel_files = [p for p in qrel_files if p.stem == split]
    if not qrel_files:
        raise DataError(folder, "not a BEIR folder: no qrels/*.tsv" + (f" for split {split!r}" if split else ""))
    corpus = _beir_texts(corpus_p)
    queries = _beir_texts(queries_p)
    rows = []
    for qf in qrel_files:
        with open(qf, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.rstrip("\n").split("\t")
                if lineno == 1 and parts and parts[0] == "query-id":
                    continue
                if not line.strip():
                    continue
                if len(parts) < 3:
                    raise DataError(qf, f"line {lineno}: expected query-id<TAB>corpus-id<TAB>score")
                qid, cid, score = parts[:3]
                try:
                    if float(score) <= 0:
                        continue
                except ValueError:
                    raise DataError(qf, f"line {lineno}: score {score!r} is not a number") from None
                if qid not in queries:
                    raise DataError(qf, f"line {lineno}: query {qid!r} is not in queries.jsonl")
                if cid not in corpus:
                    raise DataError(qf, f"line {lineno}: document {cid!r} is not in corpus.jsonl")
                rows.append({"topic": qid.rsplit("-", 1)[0], "argument": queries[qid], "counter": corpus[cid]})
    return _finish(rows, qrel_files[0])


def _beir_texts(path: Path) -> dict[str, str]:
    out = {}
    for i, obj in enumerate(_read_jsonl_rows(path), 1):
        if "_id" not in obj or "text" not in obj:
            raise DataError(path, f"line {i}: a BEIR record needs '_id' and 'text'")
        out[str(obj["_id"])] = str(obj["text"])
    if not out:
        raise DataError(path, "no records (the file is empty)")
    return out


def split_by_topic(pairs: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whole topics go to train or test; the test side gets about `test_fraction` of the topics."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test fraction must be in (0, 1), got {test_fraction}")
    topics = np.array(sorted(pairs["topic"].unique()))
    if len(topics) < 2:
        raise UserError("need at least 2 topics to split train/test by topic")
    rng = np.random.default_rng(seed)
    rng.shuffle(topics)
    n_test = min(len(topics) - 1, max(1, round(len(topics) * test_fraction)))
    test_topics = set(topics[:n_test])
    is_test = pairs["topic"].isin(test_topics)
    return pairs[~is_test].reset_index(drop=True), pairs[is_test].reset_index(drop=True)
