"""The retrieval Task: the two-tower network trained with in-batch sampled softmax."""

from __future__ import annotations

import torch
from torch import Tensor

from feedrank.artifacts.config import RetrievalLossConfig
from feedrank.models.two_tower import TwoTower
from feedrank.train.batch_types import RetrievalBatch
from feedrank.train.losses import sampled_softmax_loss


class RetrievalTask:
    """Network + loss over `RetrievalBatch`es (data/examples.retrieval_examples, as tensors)."""

    def __init__(self, model: TwoTower, cfg: RetrievalLossConfig) -> None:
        self._model = model
        self.cfg = cfg

    @property
    def model(self) -> TwoTower:
        return self._model

    def loss(self, batch: RetrievalBatch) -> tuple[Tensor, dict[str, float]]:
        model = self._model
        temperature = model.cfg.temperature
        user = model.user(batch.user)  # (B, d)
        content = model.item_tower.content(batch.item)  # (B, d)
        # Every in-batch item scored at every row's own time: freshness differs per pair.
        logits = model.score_at(user, content, batch.published_us, batch.ts_us)  # (B, B)
        extra_logits: list[Tensor] = []
        extra_masks: list[Tensor] = []
        # Shown in the same request or drawn from the live catalog: either way their freshness
        # buckets were computed at the row's own time. Uniform catalog draws need no logQ term
        # (a constant shift); shown items were not drawn by popularity either.
        for negatives in batch.negatives():
            extra = model.item(negatives)  # (B, H, d)
            extra_logits.append(torch.einsum("bd,bhd->bh", user, extra) / temperature)
            extra_masks.append(negatives.item_id > 0)
        hard_logits = torch.cat(extra_logits, dim=1) if extra_logits else None
        hard_mask = torch.cat(extra_masks, dim=1) if extra_masks else None
        loss = sampled_softmax_loss(
            logits,
            logq=batch.logq if self.cfg.logq_correction else None,
            item_ids=batch.item.item_id,
            weights=batch.weight,
            hard_logits=hard_logits,
            hard_mask=hard_mask,
        )
        with torch.no_grad():
            # Share of rows whose own item out-scores every other in-batch item: a cheap accuracy.
            top1 = (logits.argmax(dim=1) == torch.arange(len(logits), device=logits.device)).float().mean()
        return loss, {"loss": float(loss.detach()), "in_batch_top1": float(top1)}
