"""Training logs in any common format -> one tidy scalar table (run, step, epoch, key, value, wall_time).

Readers, one module per format family: text (plain-text logs, with pairs/templates/rows/user_regex
behind it), tabular (CSV exports, JSON lines), documents (trainer_state.json, JSON records) and
tensorboard. loader picks the reader for a file and expands folders, zips and store runs; cli is
`actlab logs`. Uploaded files are data: nothing here unpickles, imports or executes them,
and zips are read in memory only.

Each file either parses or raises LogParseError naming the file and what is wrong; `load_*`
collect those per file so one bad file never stops the others. Every bound a reader holds a file to
(line length, JSON depth, columns, series, points, sizes) is named once in limits.py.
"""
from .documents import parse_json
from .loader import (_CACHE, MAX_FILE_BYTES, MAX_ZIP_MEMBERS, MAX_ZIP_RATIO, MAX_ZIP_TOTAL_BYTES,  # noqa: F401 (_CACHE)
                              cache_stats, content_hash, decode_text, dedupe_runs, load_bytes, load_paths,
                              load_store_runs, load_uploads, load_zip, parse_bytes, variant_seed_of)
# _CACHE: bench/parse_speed.py clears it to time parsing, not the content-hash cache.
from .limits import DEFAULT as DEFAULT_LIMITS
from .limits import Limits
from .names import infer_variant_seed
from .parsed import (EPOCH_KEYS, MAX_UNPARSED_KEPT, STEP_KEYS, WALL_KEYS, LoadResult, LogParseError,
                              ParsedLog)
from .tabular import parse_csv, parse_jsonl
from .tensorboard import looks_like_tfevents, parse_tensorboard
from .text import parse_text
from .user_regex import compile_user_regex

__all__ = ["DEFAULT_LIMITS", "EPOCH_KEYS", "Limits", "MAX_FILE_BYTES", "MAX_UNPARSED_KEPT", "MAX_ZIP_MEMBERS", "MAX_ZIP_RATIO",
           "MAX_ZIP_TOTAL_BYTES", "STEP_KEYS", "WALL_KEYS", "LoadResult", "LogParseError", "ParsedLog",
           "cache_stats", "compile_user_regex", "content_hash", "decode_text", "dedupe_runs", "infer_variant_seed",
           "load_bytes", "load_paths", "load_store_runs", "load_uploads", "load_zip", "looks_like_tfevents",
           "parse_bytes", "parse_csv", "parse_json", "parse_jsonl", "parse_tensorboard", "parse_text",
           "variant_seed_of"]
