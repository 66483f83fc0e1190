"""Loss functions: logQ correction recovers true preferences; BCE weights behave."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from feedrank.artifacts.labels import EngagementWeights
from feedrank.train.losses import grouped_softmax_loss, multitask_bce, sampled_softmax_loss

NUM_ITEMS = 8


def learned_order_of_minority_user(correct: bool, seed: int = 0) -> list[int]:
    """Two users: user 0 (90% of traffic) loves item 0; user 1 truly prefers 0 > 1 > 2 > ...

    Item 0 is therefore by far the most frequent in-batch negative. Each user's embedding is a free
    row of logits over items (item embeddings are one-hot), so the learned row is the preference.
    """
    gen = torch.Generator().manual_seed(seed)
    p0 = torch.tensor([0.9] + [0.1 / (NUM_ITEMS - 1)] * (NUM_ITEMS - 1))
    p1 = torch.softmax(-0.5 * torch.arange(NUM_ITEMS).float(), 0)
    q = 0.9 * p0 + 0.1 * p1  # the known sampling distribution of in-batch items
    scores = torch.zeros(2, NUM_ITEMS, requires_grad=True)
    opt = torch.optim.Adam([scores], lr=0.05)
    for _ in range(600):
        user = (torch.rand(256, generator=gen) < 0.1).long()
        item = torch.where(
            user == 0,
            torch.multinomial(p0, 256, True, generator=gen),
            torch.multinomial(p1, 256, True, generator=gen),
        )
        logits = scores[user] @ F.one_hot(item, NUM_ITEMS).float().T
        loss = sampled_softmax_loss(logits, logq=torch.log(q[item]) if correct else None, item_ids=item)
        opt.zero_grad()
        loss.backward()
        opt.step()
    order: list[int] = scores.detach()[1].argsort(descending=True).tolist()
    return order


@pytest.mark.slow
def test_logq_correction_recovers_the_true_order_and_its_absence_does_not() -> None:
    assert learned_order_of_minority_user(correct=True) == list(range(NUM_ITEMS))
    uncorrected = learned_order_of_minority_user(correct=False)
    assert uncorrected != list(range(NUM_ITEMS))
    assert uncorrected.index(0) > 3  # the popular item is pushed down by popularity alone


def test_hard_negatives_and_masks() -> None:
    user = F.normalize(torch.randn(4, 8), dim=-1)
    item = F.normalize(torch.randn(4, 8), dim=-1)
    logits = user @ item.T / 0.1
    base = sampled_softmax_loss(logits)
    hard = torch.randn(4, 3)
    masked_out = sampled_softmax_loss(logits, hard_logits=hard, hard_mask=torch.zeros(4, 3, dtype=torch.bool))
    assert torch.allclose(base, masked_out)
    with_hard = sampled_softmax_loss(logits, hard_logits=hard, hard_mask=torch.ones(4, 3, dtype=torch.bool))
    assert with_hard > base  # more negatives can only raise the cross-entropy
    zero_weight = sampled_softmax_loss(logits, weights=torch.tensor([1.0, 0.0, 0.0, 0.0]))
    first_only = F.cross_entropy(logits[:1], torch.tensor([0]))
    assert torch.allclose(zero_weight, first_only)


def test_importance_weights_equal_duplicating_rows() -> None:
    logits = torch.randn(5, 4)
    targets = (torch.rand(5, 4) > 0.5).float()
    weights = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0])
    weighted, _ = multitask_bce(logits, targets, sample_weights=weights)
    idx = torch.tensor([0, 1, 1, 2, 3, 4, 4, 4])
    duplicated, _ = multitask_bce(logits[idx], targets[idx])
    assert torch.allclose(weighted, duplicated, atol=1e-6)


def test_engagement_weights() -> None:
    y = {
        "y_click": np.array([1.0, 1.0, 1.0, 0.0]),
        "y_long_dwell": np.array([0.0, 1.0, 1.0, 0.0]),
        "y_share": np.array([0.0, 0.0, 1.0, 0.0]),
        "y_hide": np.array([0.0, 0.0, 0.0, 1.0]),
    }
    assert EngagementWeights().example_weight(y).tolist() == [1.0, 3.0, 8.0, 0.0]


def fit_click_model(negative_rate: float, importance_weights: bool, seed: int = 0) -> tuple[float, float]:
    """Logistic model on one feature, trained on data whose negatives were kept at `negative_rate`.

    Returns (mean predicted probability, true click rate) on the full, un-downsampled data.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(40_000, 1, generator=gen)
    p_true = torch.sigmoid(1.5 * x[:, 0] - 3.0)  # about 8% clicks
    y = (torch.rand(40_000, generator=gen) < p_true).float()
    keep = (y > 0) | (torch.rand(40_000, generator=gen) < negative_rate)
    rate = torch.where(y > 0, 1.0, negative_rate)[keep]
    layer = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(400):
        loss, _ = multitask_bce(
            layer(x[keep]), y[keep, None], sample_weights=(1.0 / rate) if importance_weights else None
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(torch.sigmoid(layer(x)).mean()), float(y.mean())


@pytest.mark.slow
def test_negative_downsampling_stays_calibrated_with_importance_weights() -> None:
    predicted, observed = fit_click_model(negative_rate=0.2, importance_weights=True)
    assert predicted / observed == pytest.approx(1.0, abs=0.1)
    # Without the correction the model believes clicks are several times more common.
    biased, _ = fit_click_model(negative_rate=0.2, importance_weights=False)
    assert biased / observed > 2.0


def test_grouped_softmax_is_each_querys_cross_entropy_of_its_click() -> None:
    # Two queries, interleaved rows; the third has no click and carries no signal.
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, 3.0, 0.0, 7.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    groups = torch.tensor([10, 10, 4, 10, 4, 4, 99])
    a = F.cross_entropy(logits[[0, 1, 3]][None], torch.tensor([0]))
    b = F.cross_entropy(logits[[2, 4, 5]][None], torch.tensor([1]))
    got = grouped_softmax_loss(logits, labels, groups)
    assert torch.allclose(got, (a + b) / 2)
    # Moving the unclicked query's row changes nothing; raising a negative of query 10 costs more.
    moved = logits.clone()
    moved[6] = -50.0
    assert torch.allclose(grouped_softmax_loss(moved, labels, groups), got)
    harder = logits.clone()
    harder[1] = 2.0
    assert grouped_softmax_loss(harder, labels, groups) > got


def test_grouped_softmax_spreads_several_clicks_and_ignores_queries_without_one() -> None:
    logits = torch.tensor([0.0, 1.0, 2.0, 5.0], requires_grad=True)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    groups = torch.tensor([0, 0, 0, 1])
    loss = grouped_softmax_loss(logits, labels, groups)
    log_p = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    assert torch.allclose(loss, -(log_p[0] + log_p[1]) / 2)
    loss.backward()
    assert logits.grad is not None and float(logits.grad[3]) == 0.0
    none = grouped_softmax_loss(logits.detach(), torch.zeros(4), groups)
    assert float(none) == 0.0


def test_grouped_softmax_learns_the_order_within_queries() -> None:
    # One feature per row; the click is the row with the highest feature in its query, but the
    # feature's level differs between queries. A softmax per query learns a positive slope.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen) + 5 * torch.randn(64, 1, generator=gen)
    labels = (x == x.max(dim=1, keepdim=True).values).float()
    groups = torch.arange(64)[:, None].expand(64, 8)
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.5)
    for _ in range(50):
        loss = grouped_softmax_loss((w * x).flatten(), labels.flatten(), groups.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(w.detach()) > 1.0


def test_per_head_weights_leave_a_row_out_of_one_head_only() -> None:
    gen = torch.Generator().manual_seed(3)
    logits, targets = torch.randn(6, 4, generator=gen), (torch.rand(6, 4, generator=gen) > 0.5).float()
    weights = torch.ones(6, 4)
    weights[4:, 1:] = 0.0  # rows 4-5 count for head 0 only
    _, per_head = multitask_bce(logits, targets, sample_weights=weights)
    _, all_rows = multitask_bce(logits, targets)
    _, first_rows = multitask_bce(logits[:4], targets[:4])
    assert torch.allclose(per_head[0], all_rows[0]) and torch.allclose(per_head[1:], first_rows[1:])
    # a (N, H) weight equal in every head is the (N,) weight
    row = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0, 1.0])
    _, as_rows = multitask_bce(logits, targets, sample_weights=row)
    _, as_matrix = multitask_bce(logits, targets, sample_weights=row[:, None].expand(6, 4))
    assert torch.allclose(as_rows, as_matrix)
