"""The served sets (the compiled kernel's one pass, or numpy's sort and matrix product) are the offline sets of
the same scores, in order."""

import dataclasses

import numpy as np
import pytest

from candor.calibration.conformal.lac import LAC
from candor.calibration.conformal.split import scores_of
from candor.calibration.manifest import ConformalSpec
from candor.server.core.plane import top_classes
from candor.server.core.ranked_sets import BUILT
from candor.server.core.sets import SIZE_BUCKETS, PredictionSets, SizeCounts, affine_form

K = 7
METHODS = ["lac", "aps", "raps"]


def probabilities(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, K)) * rng.uniform(0.5, 4, size=(rows, 1))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p[:5, :3] = p[:5, [0]]  # ties: the lower class comes first
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def prediction_sets(class_conditional: bool) -> PredictionSets:
    spec = ConformalSpec("conformal.npz", "0" * 64, "synthetic", 1400, 0, 0, "synthetic/1", "synthetic/1", METHODS, "raps",
                         0.9, 0.02, 2, class_conditional, [])  # fmt: skip
    probs, labels = probabilities(1400, 1).astype(np.float64), np.random.default_rng(2).integers(0, K, 1400)
    scores = {s.label: s.label_scores(probs, labels) for s in scores_of(spec, randomised=False)}
    return PredictionSets(spec, scores, labels, K)


def offline(rule, p: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
    member = rule.score.sets(p.astype(np.float64), rule.thresholds)
    order = np.argsort(-p, axis=1, kind="stable")
    return [[int(c) for c in row if m[c]] for row, m in zip(order, member, strict=True)], member.sum(axis=1)


@pytest.mark.parametrize("compiled", [True, False], ids=["kernel", "numpy"])
@pytest.mark.parametrize("class_conditional", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("coverage", [0.5, 0.9, 0.99])
def test_served_sets_are_the_offline_sets_most_probable_first(method, coverage, class_conditional, compiled):
    if compiled and not BUILT:
        pytest.skip("the compiled kernel is not built here (test_the_kernel_is_built says why that fails where cc is)")
    sets = prediction_sets(class_conditional)
    rule = sets.rule(coverage, method)
    assert rule.linear is not None and (rule.limit is None) == class_conditional
    assert (rule.ranked is not None) == BUILT  # every served method's form is one the kernel takes
    p = probabilities(300, 3)
    want, sizes = offline(rule, p)
    for top_k in (0, 1, 3, K):
        counted = rule.served_sizes.per_size.copy()
        served = PredictionSets.serve(rule, p, top_k, compiled=compiled)
        assert (served.order.dtype == np.int32) == compiled  # the kernel writes int32; numpy's argsort gives int64
        assert served.sizes.dtype == np.int32 and served.sizes.tolist() == sizes.tolist()
        assert served.classes.tolist() == [c for row in want for c in row]
        top, top_p = served.top(top_k)
        expected, expected_p = top_classes(p, top_k) if top_k else (np.empty((len(p), 0)), np.empty((len(p), 0)))
        assert top.shape == (len(p), top_k) and np.array_equal(top, expected) and np.array_equal(top_p, expected_p)
        rule.served_sizes.snapshot()  # the numpy path's pending sizes folded in
        assert (rule.served_sizes.per_size - counted).tolist() == np.bincount(sizes, minlength=K + 1).tolist()


@dataclasses.dataclass(frozen=True)
class SquaredLAC(LAC):
    """Not affine in the sorted probabilities: the served path must notice and fall back."""

    def class_scores(self, probs, u=None):
        return (1.0 - probs) ** 2

    def ranked_scores(self, sorted_probs):
        return (1.0 - sorted_probs) ** 2


def test_a_score_that_is_not_affine_in_the_sorted_probabilities_falls_back_to_its_own_sets():
    assert affine_form(SquaredLAC(), K) is None
    assert affine_form(LAC(), K) is not None
    sets = prediction_sets(False)
    rule = dataclasses.replace(sets.rule(0.9, "lac"), score=SquaredLAC(), linear=None, offset=None, limit=None,
                               ranked=None)  # fmt: skip
    p = probabilities(100, 4)
    served = PredictionSets.serve(rule, p, 2)
    want, sizes = offline(rule, p)
    assert served.sizes.tolist() == sizes.tolist() and served.classes.tolist() == [c for row in want for c in row]


def test_served_sizes_are_counted_whether_or_not_a_fold_is_due():
    counts = SizeCounts(11)
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 12, size=int(rng.integers(1, 40))).astype(np.int32) for _ in range(SizeCounts.FOLD_EVERY + 7)]
    for i, sizes in enumerate(batches):
        counts.add(sizes)
        if i in (3, SizeCounts.FOLD_EVERY + 2):  # a scrape in the middle
            counts.snapshot()
    every = np.concatenate(batches)
    buckets, total, rows = counts.snapshot()
    assert (total, rows) == (int(every.sum()), len(every))
    assert buckets.tolist() == np.bincount(np.searchsorted(SIZE_BUCKETS, every), minlength=len(SIZE_BUCKETS) + 1).tolist()
