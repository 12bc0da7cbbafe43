"""What every reader returns: one file's tidy scalar table (ParsedLog), a batch of them with the
files that failed (LoadResult), and the error a reader raises (LogParseError)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..errors import UserError
from .names import _stem, infer_variant_seed
from ..store.runs import SCALAR_COLUMNS

MAX_UNPARSED_KEPT = 200  # line reports kept per file; the count is always exact
STEP_KEYS = ("step", "global_step", "_step", "iteration", "iter", "it", "trainer/global_step", "batch")
EPOCH_KEYS = ("epoch", "ep")
WALL_KEYS = ("wall_time", "_timestamp", "timestamp", "time")


class LogParseError(UserError):
    """A file that cannot be read as a log. The message names the file."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(f"{name}: {problem}")


@dataclass
class ParsedLog:
    name: str                      # file name, or path inside a zip
    format: str                    # text, keyvalue, jsonl, csv, trainer_state, tensorboard, store
    df: pd.DataFrame               # SCALAR_COLUMNS; `run` may hold several runs (W&B exports)
    unparsed: list = field(default_factory=list)  # [(line_no, text)], at most MAX_UNPARSED_KEPT
    n_unparsed: int = 0
    percent_keys: list = field(default_factory=list)  # keys printed as "98.2%", stored as 0.982
    warnings: list = field(default_factory=list)
    sha256: str = ""
    # (variant, seed) from the run's own config (store run, MLflow params, W&B config), or
    # {run: (variant, seed)} when the file holds several runs (W&B runs export)
    variant_hint: tuple | dict | None = None

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(self.df["run"].tolist())) if len(self.df) else []


@dataclass
class LoadResult:
    logs: list[ParsedLog] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, what is wrong)

    def extend(self, other: LoadResult):
        self.logs += other.logs
        self.errors += other.errors

    def scalars(self) -> pd.DataFrame:
        frames = [p.df for p in self.logs if len(p.df)]
        return pd.concat(frames, ignore_index=True) if frames else _empty()

    def run_table(self) -> pd.DataFrame:
        """One row per run: run, file, format, variant, seed, n_points (the editable part on the page)."""
        rows = []
        for p in self.logs:
            counts = p.df.groupby("run", sort=False, observed=True).size() if len(p.df) else {}
            for run in p.runs:
                variant, seed = infer_variant_seed(run if run != _stem(p.name) else p.name)
                rows.append({"run": run, "file": p.name, "format": p.format, "variant": variant,
                             "seed": seed, "n_points": int(counts[run])})
        return pd.DataFrame(rows, columns=["run", "file", "format", "variant", "seed", "n_points"])


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        SCALAR_COLUMNS, ["object", "int64", "float64", "object", "float64", "float64"])})
