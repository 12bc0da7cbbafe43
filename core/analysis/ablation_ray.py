"""`ablate ... --backend ray [--address auto|ray://HOST:PORT]`: each variant x seed is a Ray task.

Ray does the scheduling (a task asks for one GPU, or one CPU on a CPU cluster), the resource
accounting and the retries (`max_retries`: a task whose worker dies is run again). With no
address, Ray starts a local cluster on this machine.

Live wherever the workers are: a worker trains into a store of its own (a temporary folder) and a
thread beside the trainer ships what each flush wrote (core/store/mirror.py) to a small relay
actor; the driver drains the relay every `interval` seconds into its own run store, so the monitor
on the driver's machine shows every run live, with or without a shared file system. The relay
also carries the driver's pending commands (a recycle from the page) back to the run's worker,
and the run's checkpoint and text log forward: a retried task resumes from the last checkpoint
that reached the driver, or starts again; either way the driver's store supersedes what the lost
worker wrote after that point, so it keeps one value per (run, step, key).

Ray is optional (`pip install 'actlab[ray]'`); workers need actlab installed (a local cluster
shares this environment).
"""
from __future__ import annotations

import logging
import shutil
import signal
import socket
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from ..errors import UserError
from ..store.mirror import Mirror, RunTail, deliver, pending_commands
from ..store.runs import RunStore

INSTALL = "--backend ray needs Ray: pip install 'actlab[ray]' (or pip install 'ray>=2.30')"
MAX_RETRIES = 3


def require_ray():
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL) from None
    return ray


class Relay:
    """The mailbox between the workers and the driver (a Ray actor; it holds no run store)."""

    def __init__(self):
        self.inbox: list = []
        self.commands: dict[str, list] = {}
        self.attempts: dict[str, int] = {}
        self.files: dict[str, dict] = {}
        self.notes: dict[str, str] = {}
        self.stopping = False

    def begin(self, name: str) -> tuple[int, dict, bool]:
        """A task starts (again): its attempt number, the files of its run the relay holds, and
        whether the grid is stopping (then the task returns before training)."""
        self.attempts[name] = self.attempts.get(name, 0) + 1
        return self.attempts[name], dict(self.files.get(name, {})), self.stopping

    def stop(self) -> None:
        self.stopping = True

    def note(self, name: str, text: str) -> None:
        self.notes[name] = text

    def push(self, name: str, batch: dict | None, files: dict) -> list:
        self.inbox.append((name, batch, files))
        self.files.setdefault(name, {}).update(files)
        return self.commands.get(name, [])

    def drain(self) -> list:
        out, self.inbox = self.inbox, []
        return out

    def set_commands(self, commands: dict) -> None:
        self.commands = commands

    def report(self) -> dict:
        return {"attempts": dict(self.attempts), "notes": dict(self.notes)}


class Shipper(threading.Thread):
    """Beside the trainer in the worker: every `interval` seconds, what the local run gained goes
    to the relay; the commands the relay holds for the run come back into the local store."""

    def __init__(self, relay, tail: RunTail, files: dict[str, Path], interval: float):
        super().__init__(daemon=True, name=f"ship-{tail.name}")
        self.relay, self.tail, self.files, self.interval = relay, tail, files, interval
        self.seen: dict[str, tuple] = {}
        self.halt = threading.Event()
        self.warned = False

    def _changed_files(self) -> dict[str, bytes]:
        out = {}
        for key, path in self.files.items():
            try:
                st = path.stat()
                # Size and inode too: two writes within one tick of the file system's clock share an mtime.
                m = (st.st_mtime_ns, st.st_size, st.st_ino)
                if self.seen.get(key) != m:
                    out[key], self.seen[key] = path.read_bytes(), m
            except OSError:
                continue
        return out

    def sync(self) -> None:
        import ray

        try:
            # Files before rows: a checkpoint is saved after its rows were written, so the rows
            # read next include every row up to the checkpoint's step.
            files = self._changed_files()
            batch = self.tail.read()
            if batch is None and not files:
                return
            commands = ray.get(self.relay.push.remote(self.tail.name, batch, files))
            if commands:
                deliver(self.tail.store, self.tail.name, commands)
        except Exception as e:  # never stop the training over the live view
            if not self.warned:
                self.warned = True
                print(f"actlab: shipping {self.tail.name} to the driver failed ({e.__class__.__name__}: {e}); "
                      "retrying at each interval", file=sys.stderr)

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.sync()

    def finish(self) -> None:
        self.halt.set()
        self.join()
        self.sync()


def train_remote(relay, task: str, config: dict, interval: float) -> dict:
    """One run, in a Ray worker. Its store, checkpoints and text log live in a local folder named
    after the run (the same path on every attempt, so a checkpoint's saved paths stay valid)."""
    import ray

    from ..train.loop import load_checkpoint
    from .ablation_worker import trainer

    name = config["name"]
    attempt, files, stopping = ray.get(relay.begin.remote(name))
    if stopping:  # a queued task Ray dispatched as the grid was being stopped
        return {"run": name, "attempt": attempt, "skipped": True}
    root = Path(tempfile.gettempdir()) / "actlab-ray" / name
    shutil.rmtree(root, ignore_errors=True)  # what an earlier attempt on this machine left
    cfg = {**config, "runs_dir": str(root / "runs"), "checkpoints_dir": str(root / "checkpoints"), "progress": False}
    local = {"checkpoint": root / "checkpoints" / name / "last.pt"}
    if config.get("text_log"):
        local["text_log"] = root / "text.log"
        cfg["text_log"] = str(local["text_log"])
    for key, data in files.items():
        local[key].parent.mkdir(parents=True, exist_ok=True)
        local[key].write_bytes(data)
    resume_step = None
    if "checkpoint" in files:
        resume_step = int(load_checkpoint(local["checkpoint"])["step"])
        cfg["resume"] = name
        ray.get(relay.note.remote(name, f"resumed from step {resume_step}"))
    elif attempt > 1:
        ray.get(relay.note.remote(name, "started again (no checkpoint had reached the driver)"))
    shipper = Shipper(relay, RunTail(RunStore(root / "runs"), name, resume_step), local, interval)
    shipper.start()
    try:
        trainer(task)(cfg)
    finally:
        shipper.finish()
    shutil.rmtree(root, ignore_errors=True)
    return {"run": name, "attempt": attempt}


def _check_reachable(address: str) -> None:
    """A one-line error for an address nothing answers at, before Ray retries it for minutes."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


def connect(ray, address: str | None) -> bool:
    """Join the cluster (or start a local one). True when this call started Ray (and should stop it)."""
    if address not in (None, "auto"):
        _check_reachable(address)
    if ray.is_initialized():
        return False
    kwargs = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(address=address, **kwargs)
    except Exception as e:  # Ray raises ConnectionError, RuntimeError or ValueError here
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise UserError(f"cannot connect to Ray at {address or 'a new local cluster'}: {first[:200]}") from None
    return True


def _error_reason(ray, e: Exception) -> str:
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = getattr(e, "cause", None) or e
        return f"{cause.__class__.__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"[:300]
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{e.__class__.__name__}: {first}"[:300]


def run_ray(task: str, runs: list[dict], runs_dir: str, address: str | None = None, device: str = "auto",
            interval: float = 0.5, max_retries: int = MAX_RETRIES, checkpoints_dir: str | None = None) -> list[dict]:
    """Run the grid as Ray tasks; returns the outcome of every run that started, in grid order."""
    ray = require_ray()
    store = RunStore(runs_dir)
    taken = [j["config"]["name"] for j in runs if store.exists(j["config"]["name"])]
    if taken:
        raise UserError(f"run {taken[0]!r} already exists in {runs_dir}; pick another --grid")
    started_here = connect(ray, address)
    grid = _RayGrid(ray, task, runs, store, interval, max_retries, device, checkpoints_dir)
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, grid.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return grid.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        grid.mirror.close()
        if started_here:
            ray.shutdown()


class _RayGrid:
    def __init__(self, ray, task, runs, store, interval, max_retries, device, checkpoints_dir):
        from .. import paths

        self.ray, self.task, self.runs, self.store, self.interval = ray, task, runs, store, interval
        self.mirror = Mirror(store)
        self.stop_requested = False
        gpus = device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1
        # max_calls=1: every run in a fresh worker process (Ray's default for GPU tasks), so nothing of
        # one run (GPU memory, a stop that came as it ended, a trainer's module state) reaches the next.
        # A bi-encoder run in a worker reused after a stopped MNIST run once died of a SystemError.
        self.fn = ray.remote(max_calls=1)(train_remote).options(num_gpus=1 if gpus else 0, num_cpus=1,
                                                               max_retries=max_retries, retry_exceptions=False)
        self.relay = ray.remote(num_cpus=0)(Relay).remote()
        # Where each shipped file lands on the driver: where a local run would have put it.
        self.ckdir, self.dest = {}, {}
        for j in runs:
            cfg = j["config"]
            self.ckdir[cfg["name"]] = Path(checkpoints_dir or cfg.get("checkpoints_dir") or paths.checkpoints_dir())
            self.dest[cfg["name"]] = {"checkpoint": self.ckdir[cfg["name"]] / cfg["name"] / "last.pt"}
            if cfg.get("text_log"):
                self.dest[cfg["name"]]["text_log"] = Path(cfg["text_log"])

    def on_signal(self, signum, frame):
        print(f"\n{signal.Signals(signum).name}: stopping the grid's runs", file=sys.stderr, flush=True)
        self.stop_requested = True

    def _drain(self) -> None:
        for name, batch, files in self.ray.get(self.relay.drain.remote()):
            if batch:
                if "meta" in batch:  # the driver's folders, not the worker's temporary ones (a branch reads them)
                    batch["meta"].setdefault("config", {}).update(runs_dir=str(self.store.root),
                                                                  checkpoints_dir=str(self.ckdir[name]))
                self.mirror.apply(name, batch)
            for key, data in files.items():
                path = self.dest[name][key]
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
        cmds = {n: c for n in self.dest if (c := pending_commands(self.store, n))}
        self.relay.set_commands.remote(cmds)

    def run(self) -> list[dict]:
        from tqdm.auto import tqdm

        refs = {self.fn.remote(self.relay, self.task, j["config"], self.interval): j for j in self.runs}
        errors: dict[str, str] = {}
        not_started: set[str] = set()
        pending, cancelled = list(refs), False
        with tqdm(total=len(refs), desc="grid (ray)", unit="run", dynamic_ncols=True) as bar:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=len(pending), timeout=self.interval)
                self._drain()
                for ref in done:
                    name = refs[ref]["config"]["name"]
                    try:
                        if self.ray.get(ref).get("skipped"):
                            not_started.add(name)
                    except self.ray.exceptions.TaskCancelledError:
                        not_started.add(name)
                    except Exception as e:  # the task failed for good (retries spent, or the trainer raised)
                        errors[name] = _error_reason(self.ray, e)
                    bar.update(1)
                if self.stop_requested and not cancelled:
                    # A running task gets a KeyboardInterrupt in its main thread, which the trainer's
                    # SIGINT handler turns into a graceful stop; queued ones never start (the relay's
                    # stop flag catches one that Ray dispatches while the cancel is on its way).
                    self.ray.get(self.relay.stop.remote())
                    for ref in pending:
                        self.ray.cancel(ref)
                    cancelled = True
            self._drain()
            if cancelled:
                self._await_stopped()
        return self._outcomes(errors, not_started)

    def _await_stopped(self, grace_s: float = 120.0) -> None:
        """A cancelled task counts as done in Ray before its trainer has finished stopping (eval,
        checkpoint, final shipment): keep draining until each started run says how it ended."""
        import time

        def open_runs():
            return [n for n in self.dest if self.store.exists(n)
                    and self.store.summary(n)["status"] not in ("finished", "stopped", "failed")]
        deadline = time.time() + grace_s
        while open_runs() and time.time() < deadline:
            time.sleep(self.interval)
            self._drain()

    def _outcomes(self, errors: dict, not_started: set) -> list[dict]:
        report = self.ray.get(self.relay.report.remote())
        out = []
        for j in self.runs:
            name = j["config"]["name"]
            exists = self.store.exists(name)
            if name in not_started and not exists:
                continue
            st = self.store.summary(name) if exists else None
            if st is not None and st["status"] in ("finished", "stopped", "failed"):
                status, reason = st["status"], st["reason"]
            else:
                status, reason = "failed", errors.get(name) or "the worker ended without closing the run"
                if exists:
                    self.mirror.mark(name, status, reason)
            out.append({"run": name, "variant": j["variant"], "seed": j["seed"], "status": status, "reason": reason,
                        "attempts": report["attempts"].get(name, 1), "retry": report["notes"].get(name)})
        if self.stop_requested and len(out) < len(self.runs):
            print(f"grid stopped: {len(self.runs) - len(out)} run(s) not started", flush=True)
        return out
