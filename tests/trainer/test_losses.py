"""The smoothing conventions and their losses hold to the math in DESIGN.md."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from candor.trainer.losses import (
    label_smoothing_loss,
    off_target_rows,
    prior_rows,
    smoothed_bce,
    smoothed_binary_targets,
    smoothed_targets,
    soft_cross_entropy,
    uniform_rows,
)
from candor.trainer.losses.hierarchy import hierarchy_rows


@pytest.mark.parametrize("k, eps", [(2, 0.1), (5, 0.1), (10, 0.3), (7, 0.0), (3, 0.95)])
def test_uniform_equals_torch_label_smoothing(k, eps):
    torch.manual_seed(k)
    z = torch.randn(32, k, dtype=torch.float64)
    y = torch.randint(0, k, (32,))
    expected = torch.nn.CrossEntropyLoss(label_smoothing=eps)(z, y)
    assert torch.allclose(label_smoothing_loss(z, y, eps, "uniform"), expected, atol=1e-12)


def test_off_target_targets_for_five_classes():
    q = smoothed_targets(torch.tensor([2]), 0.1, torch.as_tensor(off_target_rows(5))[torch.tensor([2])])
    assert torch.allclose(q, torch.tensor([[0.025, 0.025, 0.9, 0.025, 0.025]], dtype=torch.float64))


def test_uniform_targets_give_the_true_class_one_minus_eps_plus_eps_over_k():
    q = smoothed_targets(torch.tensor([0]), 0.1, torch.as_tensor(uniform_rows(5))[torch.tensor([0])])
    assert q[0, 0].item() == pytest.approx(0.92) and q[0, 1].item() == pytest.approx(0.02)


def test_off_target_loss_equals_explicit_target_formula():
    torch.manual_seed(0)
    z = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (16,))
    q = torch.full((16, 5), 0.1 / 4, dtype=torch.float64)
    q[torch.arange(16), y] = 0.9
    explicit = -(q * torch.log_softmax(z, dim=1)).sum(dim=1).mean()
    assert torch.allclose(label_smoothing_loss(z, y, 0.1, "off_target"), explicit, atol=1e-12)


@pytest.mark.parametrize("convention", ["uniform", "off_target"])
def test_gradient_is_p_minus_q(convention):
    torch.manual_seed(1)
    z = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 6, (8,))
    label_smoothing_loss(z, y, 0.2, convention).backward()
    rows = uniform_rows(6) if convention == "uniform" else off_target_rows(6)
    q = smoothed_targets(y, 0.2, torch.as_tensor(rows)[y])
    p = torch.softmax(z.detach(), dim=1)
    assert torch.allclose(z.grad, (p - q) / 8, atol=1e-12)


def test_weighted_soft_ce_equals_torch_weighted_ce_on_hard_labels():
    torch.manual_seed(2)
    z = torch.randn(20, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (20,))
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    expected = torch.nn.CrossEntropyLoss(weight=w)(z, y)
    got = soft_cross_entropy(z, F.one_hot(y, 4).double(), w[y])
    assert torch.allclose(got, expected, atol=1e-12)


def test_prior_rows_are_class_frequencies():
    rows = prior_rows(np.array([0, 0, 0, 1]), 3)
    assert np.allclose(rows, [[0.75, 0.25, 0.0]] * 3)


def test_hierarchy_tree_puts_more_mass_on_siblings(tmp_path):
    tree = {"round": ["0", "8"], "straight": {"thin": ["1", "7"], "cross": ["4"]}}
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(tree))
    names = ["0", "1", "4", "7", "8"]
    rows = hierarchy_rows(path, names)
    assert np.allclose(rows.sum(axis=1), 1) and np.allclose(np.diag(rows), 0)
    one = dict(zip(names, rows[names.index("1")], strict=True))
    # "1": sibling "7" shares 2 groups (weight 4), cousin "4" shares 1 (2), others 0 (1)
    assert one["7"] == pytest.approx(4 / 8) and one["4"] == pytest.approx(2 / 8) and one["0"] == pytest.approx(1 / 8)
    q = smoothed_targets(torch.tensor([1]), 0.2, torch.as_tensor(rows)[torch.tensor([1])])
    assert q[0, 1].item() == pytest.approx(0.8)


def test_hierarchy_similarity_matrix_and_errors(tmp_path):
    sim = np.array([[9, 1, 3], [1, 9, 0], [0, 0, 9]], dtype=float)
    np.savetxt(tmp_path / "sim.csv", sim, delimiter=",")
    rows = hierarchy_rows(tmp_path / "sim.csv", ["a", "b", "c"])
    assert np.allclose(rows[0], [0, 0.25, 0.75])
    assert np.allclose(rows[2], [0.5, 0.5, 0])  # no similarity at all: off-target uniform
    (tmp_path / "tree.json").write_text(json.dumps({"g": ["a", "b"]}))
    with pytest.raises(ValueError, match=r"missing \['c'\]"):
        hierarchy_rows(tmp_path / "tree.json", ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"must be \[2, 2\]"):
        hierarchy_rows(tmp_path / "sim.csv", ["a", "b"])


def test_multilabel_targets_and_bce():
    y = torch.tensor([[1.0, 0.0]])
    q = smoothed_binary_targets(y, 0.1)
    assert torch.allclose(q, torch.tensor([[0.9, 0.1]]))
    z = torch.tensor([[2.0, -1.0]], dtype=torch.float64, requires_grad=True)
    loss = smoothed_bce(z, q.double())
    loss.backward()
    # d/dz of mean BCE = (sigmoid(z) - q) / (N * K)
    assert torch.allclose(z.grad, (torch.sigmoid(z.detach()) - q) / 2, atol=1e-12)
    w = torch.tensor([2.0, 1.0], dtype=torch.float64)
    manual = (w * F.binary_cross_entropy_with_logits(z.detach(), q.double(), reduction="none")).mean()
    assert torch.allclose(smoothed_bce(z.detach(), q.double(), w), manual)


def test_epsilon_outside_range_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        label_smoothing_loss(torch.zeros(1, 3), torch.tensor([0]), 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        smoothed_binary_targets(torch.zeros(1, 3), -0.1)
