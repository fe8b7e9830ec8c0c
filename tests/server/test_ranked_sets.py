"""The compiled prediction-sets kernel against numpy's formulas: the order, the sorted values, the sets, for narrow
and wide rows, ties and large batches; its refusals; and that the install builds it where a compiler is."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candor.server.core import ranked_sets
from candor.server.core.ranked_sets import BUILT, RankedRule
from tests.conftest import REPO_ROOT

needs_kernel = pytest.mark.skipif(not BUILT, reason="the compiled kernel is not built here")


def test_the_kernel_is_built_where_a_c_compiler_is():
    """The install (make install, .ci/run, the Docker build stages) compiles it when it can; a silent fallback
    would cost every request with sets about three times as much (docs/benchmarks.md)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine: the numpy path serves the sets")
    assert BUILT, "a C compiler is here but candor.server.core._ranked_sets did not build: reinstall and read pip's log"


def form(k: int, a: float, b: float) -> np.ndarray:
    return a * np.eye(k) + b * np.triu(np.ones((k, k)))


def numpy_sets(p: np.ndarray, linear: np.ndarray, offset: np.ndarray, rank_limit: np.ndarray, class_limit: np.ndarray):
    """What the kernel computes, spelled in numpy: a stable sort, a running sum, one comparison per rank."""
    order = np.argsort(-p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1)
    x = ranked.astype(np.float64)
    a, b = linear[0, 0] - (linear[0, 1] if len(linear) > 1 else 0.0), (linear[0, 1] if len(linear) > 1 else 0.0)
    member = a * x + b * np.cumsum(x, axis=1) + offset <= rank_limit + class_limit[order]
    return member.sum(axis=1), order[member], order, ranked


def rows(n: int, k: int, seed: int, ties: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * rng.uniform(0.2, 6, size=(n, 1))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    if ties and n > 2 and k > 2:
        p[0, :] = p[0, 0]  # a whole row of equal values
        p[1, 1:] = 0.0  # equal zeros behind the top class
        p[2, ::2] = p[2, 0]  # equal values spread over the row
    return p


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 150), n=st.integers(0, 40), seed=st.integers(0, 10_000), a=st.sampled_from([-1.0, 0.0, 0.5]),
       b=st.sampled_from([0.0, 1.0, 2.0, -1.0]), class_conditional=st.booleans(), top=st.integers(0, 12))  # fmt: skip
def test_the_kernel_is_numpys_sort_running_sum_and_comparison(k, n, seed, a, b, class_conditional, top):
    """Narrow rows (insertion sort) and wide ones (merge sort, over 64 classes), ties to the lower class; limits
    that rise along the ranking or differ per class, and scores that fall along it, so any rank may be in."""
    p = rows(n, k, seed)
    rng = np.random.default_rng(seed + 1)
    linear, offset = form(k, a, b), rng.uniform(0, 0.2, k)
    if class_conditional or k == 1:
        rule = RankedRule.of(linear, offset, None, rng.uniform(-0.5, 1.5, k))
        want = numpy_sets(p, linear, offset, np.zeros(k), rule.class_limit)
    else:
        limit = np.sort(rng.uniform(-0.5, 1.5, k))  # rising: not a prefix rule
        rule = RankedRule.of(linear, offset, limit, None)
        want = numpy_sets(p, linear, np.zeros(k), rule.rank_limit, np.zeros(k))
    assert not rule.prefix  # an offset on the left, or a limit per class: the kernel ranks the whole row
    check_against(rule, p, want, top)


def check_against(rule: RankedRule, p: np.ndarray, want: tuple, top: int) -> None:
    k = p.shape[1]
    top = min(top, k)
    counts = np.arange(k + 1, dtype=np.int64)  # added to, not overwritten
    got = rule.apply(p, top, counts)
    sizes, classes, order, ranked = want
    for name, g, w in zip(("sizes", "classes", "order", "ranked"), got, (sizes, classes, order[:, :top], ranked[:, :top]),
                          strict=True):  # fmt: skip
        assert np.array_equal(g, w), name
    assert [g.dtype for g in got] == [np.int32, np.int32, np.int32, np.float32]
    assert (counts - np.arange(k + 1)).tolist() == np.bincount(sizes, minlength=k + 1).tolist()


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 150), n=st.integers(0, 40), seed=st.integers(0, 10_000), a=st.sampled_from([-1.0, 0.0, -0.5]),
       b=st.sampled_from([0.0, 1.0, 2.0]), top=st.integers(0, 12), penalty=st.sampled_from([0.0, 0.01, 0.3]))  # fmt: skip
def test_prefix_rules_stop_ranking_early_and_serve_what_a_full_ranking_would(k, n, seed, a, b, top, penalty):
    """One threshold, a score that never falls along the ranking and a limit that never rises (LAC, APS, RAPS):
    the kernel selects ranks only until the set ends and the top ranks are known; the answer is the full one's."""
    p = rows(n, k, seed)
    if n > 3:
        p[3, k // 2] = -0.25  # not a probability: that row is ranked whole, as the early stop needs values >= 0
    threshold = np.random.default_rng(seed).uniform(-0.5, 1.5)
    limit = threshold - penalty * np.maximum(np.arange(1, k + 1) - 1, 0)  # RAPS: the rank penalty lowers the limit
    rule = RankedRule.of(form(k, a, b), np.zeros(k), limit, None)
    assert rule.prefix or k == 1  # one class: a * x + b * x is read as (a + b) * x, of either sign
    check_against(rule, p, numpy_sets(p, form(k, a, b), np.zeros(k), limit, np.zeros(k)), top)


@needs_kernel
def test_a_batch_large_enough_to_run_without_the_gil_gives_the_same_sets():
    p = rows(1000, 80, 7)  # 80,000 values (wide rows: the merge sort): the kernel lets other threads run meanwhile
    k = p.shape[1]
    for limit in (np.full(k, 0.95), np.linspace(0.5, 0.95, k)):  # ranked early and stopped; ranked whole
        rule = RankedRule.of(form(k, 0.0, 1.0), np.zeros(k), limit, None)
        assert rule.prefix == (limit[0] == limit[-1])
        check_against(rule, p, numpy_sets(p, form(k, 0.0, 1.0), np.zeros(k), limit, np.zeros(k)), 3)


@needs_kernel
def test_forms_and_inputs_the_kernel_does_not_take_go_to_the_numpy_path():
    k = 5
    bent = form(k, 0.0, 1.0)
    bent[0, 4] = 0.5  # not a sign plus a running sum
    assert RankedRule.of(bent, np.zeros(k), np.ones(k), None) is None
    rule = RankedRule.of(form(k, -1.0, 0.0), np.ones(k), np.zeros(k), None)
    p, counts = rows(10, k, 3), np.zeros(k + 1, np.int64)
    assert rule.apply(p.astype(np.float64), 1, counts) is None  # float32 only
    assert rule.apply(np.asfortranarray(p), 1, counts) is None  # C order only
    assert rule.apply(p, 1, counts) is not None and counts.sum() == 10


@needs_kernel
def test_the_kernel_refuses_buffers_of_the_wrong_length_before_touching_them():
    n, k, top = 4, 3, 2
    p, lim = np.ones((n, k), np.float32) / k, np.zeros(k)
    out = [np.empty((n, top), np.int32), np.empty((n, top), np.float32), np.empty(n, np.int32), np.empty(n * k, np.int32),
           np.zeros(k + 1, np.int64)]  # fmt: skip
    kernel = ranked_sets._ranked_sets.ranked_sets

    def call(*args, n=n, k=k, top=top, rank_limit=lim):
        return kernel(p, n, k, 0.0, 1.0, lim, rank_limit, lim, 1, top, *(args or out))

    assert call() == 0 and out[4].tolist() == [n, 0, 0, 0]  # no cumulative sum reaches 0: every set empty
    assert out[0].tolist() == [[0, 1]] * n  # equal values: the lower class first
    with pytest.raises(ValueError, match="probs holds 48 bytes, expected 60"):
        call(n=5)
    with pytest.raises(ValueError, match="rank_limit holds 16 bytes, expected 24"):
        call(rank_limit=lim[:2].copy())
    with pytest.raises(ValueError, match="order holds 32 bytes, expected 48"):
        call(top=3)
    with pytest.raises(ValueError, match="size_counts holds"):
        call(*out[:4], np.zeros(k, np.int64))
    with pytest.raises(ValueError, match="0 <= top <= k"):
        call(top=4)
    with pytest.raises(ValueError, match="k >= 1"):
        call(k=0)
    with pytest.raises(TypeError):  # outputs must be writable
        call(bytes(32), *out[1:])
    assert out[4].tolist() == [n, 0, 0, 0]  # nothing refused was counted


@pytest.mark.slow
def test_the_kernel_reads_and_writes_only_its_buffers_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """The kernel built again with gcc's AddressSanitizer and UBSan, and this file's and the served-sets tests run
    against that build in a child process: any read or write outside a buffer, or undefined arithmetic, fails."""
    gcc = shutil.which("gcc")
    libraries = [subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
                 for name in ("libasan.so", "libubsan.so")] if gcc else []  # fmt: skip
    if not gcc or not all(Path(lib).is_absolute() for lib in libraries):
        pytest.skip("no gcc with its sanitizer runtimes here")
    source = REPO_ROOT / "src/candor/server/core/_ranked_sets.c"
    built = tmp_path / f"_ranked_sets{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run([gcc, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                    "-fno-omit-frame-pointer", "-ffp-contract=off", "-shared", "-fPIC",
                    f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(built)], check=True)  # fmt: skip
    run_tests = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('candor.server.core._ranked_sets', {str(built)!r})\n"
        "kernel = importlib.util.module_from_spec(spec); spec.loader.exec_module(kernel)\n"
        "sys.modules[spec.name] = kernel\n"
        "import candor.server.core.ranked_sets as wrapper\n"
        "assert wrapper._ranked_sets is kernel\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:xdist', '-k', 'not sanitizers',\n"
        "                      'tests/server/test_ranked_sets.py', 'tests/server/test_served_sets.py']))\n"
    )
    env = {**os.environ, "LD_PRELOAD": ":".join(libraries), "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
    result = subprocess.run([sys.executable, "-c", run_tests], capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_a_version_with_sets_says_once_when_the_kernel_is_not_built(monkeypatch, caplog):
    monkeypatch.setattr(ranked_sets, "BUILT", False)
    ranked_sets.warn_if_not_built.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="candor.server"):
            ranked_sets.warn_if_not_built()
            ranked_sets.warn_if_not_built()
        said = [r.getMessage() for r in caplog.records if "numpy path" in r.getMessage()]
        assert len(said) == 1 and "install a C compiler" in said[0]
        assert RankedRule.of(form(3, -1.0, 0.0), np.ones(3), np.zeros(3), None) is None  # and makes no kernel rules
    finally:
        ranked_sets.warn_if_not_built.cache_clear()
