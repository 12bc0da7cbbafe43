"""One run of an ablation grid in its own process: `python -m actlab.analysis.ablation_worker TASK CONFIG_JSON`.

`ablate --parallel N` starts one of these per variant x seed (ablation_parallel.py). The config is
the same dict the sequential grid hands the trainer in-process, so every backend trains the same
runs. Exit code: 0 finished or stopped, 1 the run failed, 2 a bad config (a one-line error).
"""
from __future__ import annotations

import json
import os
import sys

from ..errors import UserError


def trainer(task: str):
    """The trainer a grid of `task` calls with one run's config (imported lazily: torch, transformers)."""
    if task == "mnist":
        from ..train.mnist import train_mnist

        return train_mnist
    if task == "biencoder":
        from ..train.biencoder import train_biencoder

        return train_biencoder
    raise UserError(f"unknown grid task {task!r}")


def run_status(runs_dir: str | None, name: str) -> dict:
    from ..store.runs import RunStore

    return RunStore(runs_dir or os.environ.get("ACTLAB_RUNS_DIR", "runs")).summary(name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) != 2:
            raise UserError("usage: python -m actlab.analysis.ablation_worker TASK CONFIG_JSON")
        task, config = argv[0], json.loads(argv[1])
        name = trainer(task)(config)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second signal: the trainer has already marked its run
        return 130
    st = run_status(config.get("runs_dir"), name)
    print(f"run {name}: {st['status']}" + (f" ({st['reason']})" if st["reason"] else ""), flush=True)
    return 0 if st["status"] in ("finished", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
