"""Losses of the two models. Models return embeddings or logits; the objectives live here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sampled_softmax_loss(
    logits: Tensor,
    *,
    logq: Tensor | None = None,
    item_ids: Tensor | None = None,
    weights: Tensor | None = None,
    hard_logits: Tensor | None = None,
    hard_mask: Tensor | None = None,
) -> Tensor:
    """In-batch sampled softmax with logQ correction and optional hard negatives.

    Args:
        logits: (B, B) score of row i's user for row j's item (temperature applied); the
            diagonal holds each row's own, engaged item.
        logq: (B,) log probability that each in-batch item is sampled as a positive. In-batch
            negatives are drawn by popularity, so popular items are over-represented as negatives;
            subtracting log q from their logits makes the loss estimate a softmax over the whole
            catalog instead of one that punishes popularity (Yi et al., RecSys 2019).
        item_ids: (B,) hashed ids; another row holding the same item is not a negative.
        weights: (B,) engagement value of each example (0 drops it).
        hard_logits: (B, H) scores of items shown to the same user and not engaged with; they were
            not sampled by popularity, so they get no logQ term. hard_mask: (B, H) True = real.

    Returns the weighted mean cross-entropy of picking each row's own item.
    """
    batch = logits.shape[0]
    if logq is not None:
        logits = logits - logq[None, :]
    if item_ids is not None:
        same = item_ids[None, :] == item_ids[:, None]
        collision = same & ~torch.eye(batch, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(collision, float("-inf"))
    if hard_logits is not None:
        if hard_mask is not None:
            hard_logits = hard_logits.masked_fill(~hard_mask, float("-inf"))
        logits = torch.cat([logits, hard_logits], dim=1)
    target = torch.arange(batch, device=logits.device)
    losses = F.cross_entropy(logits.float(), target, reduction="none")
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / weights.sum().clamp(min=1e-6)


def multitask_bce(
    logits: Tensor,
    targets: Tensor,
    *,
    head_weights: Tensor | None = None,
    sample_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Weighted binary cross-entropy per head.

    Args:
        logits, targets: (N, H). head_weights: (H,) importance of each head in the total.
        sample_weights: (N,) per-row weights, e.g. 1 / keep-rate of downsampled negatives, which
            keeps predicted probabilities calibrated to the full data; or (N, H), one per row and
            head (a row weighted 0 for a head is left out of that head's mean).

    Returns (total loss, (H,) per-head losses).
    """
    per = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")  # (N, H)
    if sample_weights is not None:
        if sample_weights.dim() == 2:
            per_head = (per * sample_weights).sum(0) / sample_weights.sum(0).clamp(min=1e-6)
        else:
            per_head = (per * sample_weights[:, None]).sum(0) / sample_weights.sum().clamp(min=1e-6)
    else:
        per_head = per.mean(0)
    total = per_head.sum() if head_weights is None else (per_head * head_weights).sum()
    return total, per_head.detach()


def grouped_softmax_loss(logits: Tensor, targets: Tensor, groups: Tensor) -> Tensor:
    """Listwise cross-entropy: within each group (a query's rows), the softmax of the logits
    against the targets' share of the group's clicks.

    Args:
        logits: (N,) one score per row. targets: (N,) 0/1 labels. groups: (N,) int64 query of
            each row (any ids; rows of one query need not be adjacent).

    Returns the mean over the groups that hold a click of -Σ (y_i / Σ y) log softmax(logits)_i;
    groups without a click carry no listwise signal and are left out (0 when no group has one).
    """
    _, inverse = torch.unique(groups, return_inverse=True)
    num = int(inverse.max()) + 1 if inverse.numel() else 0
    scores, labels = logits.float(), targets.float()
    top = torch.full((num,), float("-inf"), device=scores.device)
    top = top.scatter_reduce(0, inverse, scores.detach(), reduce="amax")
    mass = torch.zeros(num, device=scores.device).index_add(0, inverse, torch.exp(scores - top[inverse]))
    log_softmax = scores - (top + torch.log(mass))[inverse]
    clicks = torch.zeros(num, device=scores.device).index_add(0, inverse, labels)
    has_click = clicks > 0
    if not bool(has_click.any()):
        return scores.sum() * 0.0
    per_group = torch.zeros(num, device=scores.device).index_add(0, inverse, labels * log_softmax)
    return -(per_group[has_click] / clicks[has_click]).mean()
