"""Loaders, validation, split and label noise on real files."""

import numpy as np
import pytest

from candor.trainer.data import load_dataset
from candor.trainer.noise import add_label_noise, flip_multilabel, transition_matrix
from candor.trainer.options import DataOptions
from candor.trainer.split import split_dataset


@pytest.mark.parametrize("name, k", [("digits", 10), ("iris", 3), ("wine", 3), ("breast_cancer", 2)])
def test_bundled_sets(name, k):
    ds = load_dataset(name)
    assert ds.num_classes == k and ds.X.dtype == np.float32 and ds.task == "multiclass"
    assert ds.fingerprint == load_dataset(name).fingerprint


def test_digits_is_image_shaped():
    assert load_dataset("digits").image_shape == (1, 8, 8)


def test_synthetic_imbalance_ratio():
    ds = load_dataset("synthetic", n_samples=2000, n_classes=4, n_features=8, imbalance=10.0, seed=3)
    counts = np.bincount(ds.y)
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.15)
    assert np.all(np.diff(counts) < 0)


def test_synthetic_multilabel():
    ds = load_dataset("synthetic_multilabel", n_samples=100, n_classes=3, n_features=5)
    assert ds.task == "multilabel" and ds.y.shape == (100, 3)


def test_npz_and_csv_round_trip(tmp_path):
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.array([0, 1, 2] * 3 + [1])
    np.savez(tmp_path / "d.npz", X=X, y=y, class_names=np.array(["cat", "dog", "owl"]))
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert ds.class_names == ["cat", "dog", "owl"] and np.array_equal(ds.y, y)
    Y = np.array([[1, 0], [0, 1], [1, 1]] * 3 + [[0, 0]])
    np.savez(tmp_path / "m.npz", X=X, Y=Y)
    assert load_dataset(str(tmp_path / "m.npz")).task == "multilabel"
    lines = ["a,b,species"] + [f"{i},{i * 2},{['x', 'y'][i % 2]}" for i in range(8)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(str(tmp_path / "d.csv"), label_column="species")
    assert ds.class_names == ["x", "y"] and ds.X.shape == (8, 2) and ds.y.tolist() == [0, 1] * 4


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.array([[np.nan, 1.0], [1.0, 2.0]]), "y": np.array([0, 1])}, "NaN or infinite"),
        ({"X": np.array([[np.inf, 1.0], [1.0, 2.0]]), "y": np.array([0, 1])}, "NaN or infinite"),
        ({"X": np.ones((3, 2)), "y": np.array([0, 1])}, "3 rows of features but 2 labels"),
        ({"X": np.ones((2, 2)), "y": np.array([0, 5]), "class_names": np.array(["a", "b"])}, r"labels must lie in \[0, 2\)"),
        ({"X": np.ones((2, 2)), "y": np.array([0, -1])}, ">= 0"),
        ({"X": np.ones((3, 2)), "y": np.array([1, 1, 1])}, "only one class"),
        ({"X": np.ones((0, 2)), "y": np.array([], dtype=int)}, "empty"),
        ({"X": np.ones((2, 2)), "y": np.array([0.5, 1.0])}, "whole numbers"),
        ({"X": np.ones((2, 2))}, "exactly one of 'y'"),
        ({"X": np.ones(4), "y": np.array([0, 1, 0, 1])}, "2-D"),
    ],
)
def test_bad_npz_is_refused(tmp_path, arrays, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_dataset(str(tmp_path / "none.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_dataset(str(tmp_path / "junk.npz"))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_dataset(str(tmp_path / "e.csv"))
    (tmp_path / "t.csv").write_text("a,label\nx,1\n")
    with pytest.raises(ValueError, match="line 2: feature values must be numbers"):
        load_dataset(str(tmp_path / "t.csv"))
    (tmp_path / "r.csv").write_text("a,label\n1,0\n2\n")
    with pytest.raises(ValueError, match="line 3 has 1 fields"):
        load_dataset(str(tmp_path / "r.csv"))
    with pytest.raises(ValueError, match="no label column 'y'"):
        load_dataset(str(tmp_path / "r.csv"), label_column="y")
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet")


def test_split_is_seeded_stratified_and_disjoint():
    ds = load_dataset("digits")
    a = split_dataset(ds, seed=4)
    b = split_dataset(ds, seed=4)
    assert all(np.array_equal(getattr(a, s), getattr(b, s)) for s in ("train", "val", "test"))
    every = np.concatenate([a.train, a.val, a.test])
    assert len(every) == len(set(every.tolist())) == len(ds.y)
    share = np.bincount(ds.y[a.test], minlength=10) / len(a.test)
    assert np.allclose(share, np.bincount(ds.y) / len(ds.y), atol=0.01)
    assert not np.array_equal(split_dataset(ds, seed=5).test, a.test)


def test_split_refuses_impossible_fractions():
    ds = load_dataset("iris")
    with pytest.raises(ValueError, match="< 1"):
        split_dataset(ds, val_fraction=0.5, test_fraction=0.5)


@pytest.mark.parametrize("kind", ["symmetric", "pair"])
def test_label_noise_rate_and_kind(kind):
    y = np.repeat(np.arange(5), 2000)
    noisy = add_label_noise(y, transition_matrix(kind, 0.2, 5), seed=0)
    assert np.mean(noisy != y) == pytest.approx(0.2, abs=0.015)
    if kind == "pair":
        changed = noisy != y
        assert np.all(noisy[changed] == (y[changed] + 1) % 5)
    assert np.array_equal(noisy, add_label_noise(y, transition_matrix(kind, 0.2, 5), seed=0))


def test_noise_matrix_file(tmp_path):
    m = np.array([[0.5, 0.5], [0.0, 1.0]])
    np.save(tmp_path / "m.npy", m)
    assert np.allclose(transition_matrix("matrix", 0, 2, str(tmp_path / "m.npy")), m)
    np.save(tmp_path / "bad.npy", np.array([[0.5, 0.6], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="rows summing to 1"):
        transition_matrix("matrix", 0, 2, str(tmp_path / "bad.npy"))


def test_multilabel_flips():
    Y = np.zeros((1000, 4))
    assert np.mean(flip_multilabel(Y, 0.1, 0)) == pytest.approx(0.1, abs=0.02)


def test_data_options_rebuild_from_manifest_params():
    opts = DataOptions(dataset="synthetic", n_samples=500, n_classes=3, data_seed=9)
    assert opts.loader_params()["seed"] == 9
    assert opts.load().fingerprint == DataOptions(dataset="synthetic", n_samples=500, n_classes=3, data_seed=9).load().fingerprint
