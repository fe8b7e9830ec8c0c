"""Arbitrary files given as data end in a ValueError that says what is wrong, nothing else."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candor.trainer.data import load_dataset


@given(st.binary(max_size=400), st.sampled_from([".npz", ".csv"]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_bytes(tmp_path, blob, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(blob)
    try:
        load_dataset(str(path))
    except ValueError as e:
        assert str(path) in str(e)


csv_cells = st.text(alphabet="0123456789.,-eE abnNaiIf\n\"'", max_size=300)


@given(csv_cells)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_csv_text(tmp_path, body):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + body)
    try:
        ds = load_dataset(str(path))
    except ValueError:
        return
    assert np.all(np.isfinite(ds.X)) and ds.X.shape[0] == len(ds.y) and len(np.unique(ds.y)) >= 2


@given(
    st.lists(st.integers(0, 3), min_size=0, max_size=5),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=12),
    st.sampled_from(["y", "Y", "z"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_npz_arrays(tmp_path, shape, values, label_key):
    X = np.resize(np.asarray(values or [0.0], dtype=np.float32), shape or [1])
    buf = io.BytesIO()
    labels = np.arange(X.shape[0] if X.ndim else 1) % 3
    np.savez(buf, X=X, **{label_key: labels if label_key != "Y" else np.eye(3)[labels]})
    path = tmp_path / "d.npz"
    path.write_bytes(buf.getvalue())
    try:
        ds = load_dataset(str(path))
    except ValueError:
        return
    assert ds.X.ndim == 2 and np.all(np.isfinite(ds.X))
