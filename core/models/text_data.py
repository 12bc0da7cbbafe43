"""Argument / counter-argument pairs: JSONL, CSV, a BEIR folder (ArguAna layout) or the bundled demo.

Every loader returns one table with columns `topic`, `argument`, `counter` (strings). The split is
by topic so that no debate leaks from train into test: a counter seen in training under the same
topic would make retrieval look better than it is.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import numpy as np
import pandas as pd

from .. import paths
from ..errors import UserError

COLUMNS = ["topic", "argument", "counter"]
DEMO_PATH = Path(__file__).resolve().parents[1] / "assets" / "demo_pairs.jsonl"


class DataError(UserError):
    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def load_pairs(source: str | os.PathLike = "demo") -> pd.DataFrame:
    """`demo`, a .jsonl/.json file, a .csv/.tsv file, a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)
    or `arguana` (the public BEIR archive, fetched once into the user cache)."""
    if str(source) == "demo":
        if not DEMO_PATH.exists():
            raise DataError(DEMO_PATH, "the bundled demo pairs are missing; pass --data PATH")
        return _finish(_read_jsonl_rows(DEMO_PATH), DEMO_PATH)
    path = beir_folder(source)
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
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by `with f:` below; decoded line by line, so a bad byte is reported at its line)
    except OSError as e:
        raise DataError(path, f"cannot read it ({e.strerror or e})") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(path, f"line {lineno} is not UTF-8 text") from None
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
    The topic is the id without its last `-pro01a` / `-con02b` part (ArguAna ids name the debate).
    A `query_id` column keeps the BEIR id, so the trainer can score its test topics on the full corpus."""
    data = read_beir(folder, split)
    data.warn()
    rows, ids = [], []
    for qid, rels in data.qrels.items():
        for cid, score in rels.items():
            if score > 0:
                rows.append({"topic": qid.rsplit("-", 1)[0], "argument": data.queries[qid], "counter": data.docs[cid][1]})
                ids.append(qid)
    out = _finish(rows, data.qrel_files[0])
    out["query_id"] = ids  # _finish keeps every row in order or raises, so the ids line up
    return out


@dataclass
class BeirData:
    """One BEIR folder read with the protocol's rules. `qrels` holds only lines whose query and
    document exist, and only queries with at least one relevant (score > 0) document; what was
    dropped is counted in `skipped_qrels` / `skipped_queries` instead of refusing the dataset."""
    folder: Path
    docs: dict[str, tuple[str, str]]          # id -> (title, text)
    queries: dict[str, str]                   # every query in queries.jsonl
    qrels: dict[str, dict[str, int]]          # query id -> {doc id: score}
    qrel_files: list[Path]
    skipped_qrels: list[str] = field(default_factory=list)    # "test.tsv:12 document 'x' is not in corpus.jsonl"
    skipped_queries: list[str] = field(default_factory=list)  # query ids left with no relevant document

    def doc_text(self, doc_id: str) -> str:
        # BEIR and MTEB encode a document as title + " " + text; the published figures assume it.
        title, text = self.docs[doc_id]
        return f"{title} {text}".strip()

    def warn(self, file=None, first: int = 3) -> None:
        file = file or sys.stderr
        if self.skipped_qrels:
            more = f" (and {len(self.skipped_qrels) - first} more)" if len(self.skipped_qrels) > first else ""
            print(f"warning: skipped {len(self.skipped_qrels)} qrels line(s): {'; '.join(self.skipped_qrels[:first])}{more}",
                  file=file)
        if self.skipped_queries:
            more = f" (and {len(self.skipped_queries) - first} more)" if len(self.skipped_queries) > first else ""
            print(f"warning: skipped {len(self.skipped_queries)} query(ies) with no relevant document in the corpus: "
                  f"{', '.join(map(repr, self.skipped_queries[:first]))}{more}", file=file)


def read_beir(folder: str | os.PathLike, split: str | None = None) -> BeirData:
    """corpus.jsonl, queries.jsonl and qrels/<split>.tsv (every qrels/*.tsv when split is None)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise DataError(folder, f"{what} (a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/*.tsv)")
    corpus_p, queries_p, qrels_d = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels"
    for p in (corpus_p, queries_p):
        if not p.is_file():
            raise DataError(folder, f"not a BEIR folder: {p.name} is missing (expected corpus.jsonl, queries.jsonl, qrels/*.tsv)")
    qrel_files = sorted(qrels_d.glob("*.tsv")) if qrels_d.is_dir() else []
    if not qrel_files:
        raise DataError(folder, "not a BEIR folder: no qrels/*.tsv")
    if split:
        known = [p.stem for p in qrel_files]
        if split not in known:
            raise DataError(folder, f"unknown split {split!r}: no qrels/{split}.tsv (splits here: {', '.join(known)})")
        qrel_files = [qrels_d / f"{split}.tsv"]
    docs = {k: (v.get("title") or "", v["text"]) for k, v in _beir_records(corpus_p).items()}
    queries = {k: v["text"] for k, v in _beir_records(queries_p).items()}
    qrels: dict[str, dict[str, int]] = {}
    skipped, judged = [], []
    for qf in qrel_files:
        try:
            with open(qf, encoding="utf-8") as f:
                lines = list(f)
        except UnicodeDecodeError:
            raise DataError(qf, "not UTF-8 text") from None
        except OSError as e:
            raise DataError(qf, f"cannot read it ({e.strerror or e})") from None
        for lineno, line in enumerate(lines, 1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            if len(parts) < 3:
                raise DataError(qf, f"line {lineno}: expected query-id<TAB>corpus-id<TAB>score")
            qid, cid, score = parts[:3]
            try:
                score = int(float(score))
            except (ValueError, OverflowError):  # "x", "nan", "inf"
                raise DataError(qf, f"line {lineno}: score {score!r} is not a number") from None
            judged.append(qid)
            if qid not in queries:
                skipped.append(f"{qf.name}:{lineno} query {qid!r} is not in queries.jsonl")
            elif cid not in docs:
                skipped.append(f"{qf.name}:{lineno} document {cid!r} is not in corpus.jsonl")
            else:
                qrels.setdefault(qid, {})[cid] = score
    # A query with nothing relevant left has no defined nDCG; BEIR would score it 0 and drag the mean.
    empty = [q for q in dict.fromkeys(judged) if q in queries and not any(s > 0 for s in qrels.get(q, {}).values())]
    for q in empty:
        qrels.pop(q, None)
    if not qrels:
        raise DataError(qrel_files[0], f"no usable judgements: {len(skipped)} line(s) name a missing query or document"
                        + (f" (first: {skipped[0]})" if skipped else "") + ", and no query has a relevant document")
    return BeirData(folder, docs, queries, qrels, qrel_files, skipped, empty)


def _beir_records(path: Path) -> dict[str, dict]:
    out = {}
    for i, obj in enumerate(_read_jsonl_rows(path), 1):
        if "_id" not in obj or "text" not in obj:
            raise DataError(path, f"line {i}: a BEIR record needs '_id' and 'text'")
        if not isinstance(obj["text"], str) or not isinstance(obj.get("title") or "", str):
            raise DataError(path, f"line {i}: 'text' and 'title' must be strings")
        out[str(obj["_id"])] = {"title": str(obj.get("title") or ""), "text": str(obj["text"])}
    if not out:
        raise DataError(path, "no records (the file is empty)")
    return out


# -- public BEIR archives --------------------------------------------------------------------
# The URL and MD5 are the ones listed in the BEIR README (beir-cellar/beir).
BEIR_ARCHIVES = {
    "arguana": ("https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/arguana.zip",
                "8ad3e3c2a5867cdced806d6503f29b99"),
}


def user_cache_dir() -> Path:
    """ACTLAB_CACHE_DIR, else $XDG_CACHE_HOME/actlab, else ~/.cache/actlab (actlab.paths)."""
    return paths.cache_dir()


def beir_folder(source: str | os.PathLike) -> Path:
    """A BEIR folder path, or a public dataset name (`arguana`) fetched once into the user cache.
    An existing local path wins over a dataset name."""
    path = Path(source)
    if path.exists() or str(source) not in BEIR_ARCHIVES:
        return path
    name = str(source)
    folder = user_cache_dir() / "beir" / name
    if (folder / "corpus.jsonl").is_file():
        return folder
    url, md5 = BEIR_ARCHIVES[name]
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urlopen(url, timeout=60) as r:
            blob = r.read()
    except (URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(name, f"cannot download {url} ({reason}). Offline? Fetch arguana.zip on a machine with "
                        f"internet, unzip it so that {folder}/corpus.jsonl exists (or set ACTLAB_CACHE_DIR), "
                        f"or pass --data /path/to/{name}") from None
    got = hashlib.md5(blob).hexdigest()
    if got != md5:
        raise DataError(name, f"downloaded archive has MD5 {got}, expected {md5}; nothing was kept")
    _unzip_beir(blob, name, folder)
    return folder


def _unzip_beir(blob: bytes, name: str, folder: Path) -> None:
    # Extract next to the target and rename at the end, so a failed unzip never looks like a dataset.
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            for m in z.namelist():
                if m.startswith(("/", "\\")) or ".." in Path(m).parts:
                    raise DataError(name, f"archive member {m!r} is unsafe; nothing was kept")
            z.extractall(tmp)
        inner = Path(tmp) / name if (Path(tmp) / name / "corpus.jsonl").is_file() else Path(tmp)
        if not (inner / "corpus.jsonl").is_file():
            raise DataError(name, "archive holds no corpus.jsonl; nothing was kept")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(inner, folder)


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
