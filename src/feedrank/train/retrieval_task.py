"""The retrieval Task: the two-tower network trained with in-batch sampled softmax."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from feedrank.models.inputs import Batch, ItemInputs, UserInputs
from feedrank.models.two_tower import TwoTower
from feedrank.train.losses import sampled_softmax_loss


@dataclass(frozen=True)
class RetrievalLossConfig:
    logq_correction: bool = True
    hard_negatives: int = 0  # shown-not-clicked items per positive from the same request (up to 50)


class RetrievalTask:
    """Network + loss. Batches are dicts from data/examples.retrieval_examples, as tensors."""

    def __init__(self, model: TwoTower, cfg: RetrievalLossConfig) -> None:
        self._model = model
        self.cfg = cfg

    @property
    def model(self) -> TwoTower:
        return self._model

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        model = self._model
        temperature = model.cfg.temperature
        user = model.user(UserInputs.from_batch(batch))  # (B, d)
        items = ItemInputs.from_batch(batch)
        content = model.item_tower.content(items)  # (B, d)
        # Every in-batch item scored at every row's own time: freshness differs per pair.
        logits = model.score_at(user, content, batch["item_published_us"], batch["ts_us"])  # (B, B)
        hard_logits: Tensor | None = None
        hard_mask: Tensor | None = None
        if self.cfg.hard_negatives > 0 and "neg_item_id" in batch:
            # Shown in the same request: their freshness buckets are already at the row's time.
            hard = model.item(ItemInputs.from_batch(batch, prefix="neg_"))  # (B, H, d)
            hard_logits = torch.einsum("bd,bhd->bh", user, hard) / temperature
            hard_mask = batch["neg_item_id"] > 0
        loss = sampled_softmax_loss(
            logits,
            logq=batch["logq"] if self.cfg.logq_correction else None,
            item_ids=batch["item_id"],
            weights=batch.get("weight"),
            hard_logits=hard_logits,
            hard_mask=hard_mask,
        )
        with torch.no_grad():
            # Share of rows whose own item out-scores every other in-batch item: a cheap accuracy.
            top1 = (logits.argmax(dim=1) == torch.arange(len(logits), device=logits.device)).float().mean()
        return loss, {"loss": float(loss.detach()), "in_batch_top1": float(top1)}
