"""The ranking Task: a multi-task ranker over a frozen two-tower's embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from feedrank.models.inputs import Batch, ItemInputs, UserInputs
from feedrank.models.ranker import HEADS, Ranker, RankerInputs
from feedrank.models.two_tower import TwoTower
from feedrank.train.losses import multitask_bce


@dataclass(frozen=True)
class RankerLossConfig:
    # How much each head's loss counts in the total; the feed score's weights are separate.
    head_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HEADS, 1.0))
    negative_rate: float = 1.0  # keep-probability of rows without engagement (1 = no downsampling)


def ranker_inputs(towers: TwoTower, batch: Batch, with_position: bool) -> RankerInputs:
    """Tower embeddings (no gradient: retrieval is trained separately) plus the ranker's features."""
    with torch.no_grad():
        user = towers.user(UserInputs.from_batch(batch))
        item = towers.item(ItemInputs.from_batch(batch))
    return RankerInputs(
        user_emb=user,
        item_emb=item,
        publisher=batch["item_pub"],
        category=batch["item_cat"],
        content_type=batch["item_type"],
        freshness=batch["item_fresh"],
        counters=batch["counters"],
        position=batch["position"] if with_position else None,
    )


class RankerTask(nn.Module):
    """Owns the ranker (trained) and the two-tower (frozen, always in eval mode)."""

    def __init__(self, ranker: Ranker, towers: TwoTower, cfg: RankerLossConfig) -> None:
        super().__init__()
        self.ranker = ranker
        self.towers = towers
        self.cfg = cfg
        for p in self.towers.parameters():
            p.requires_grad_(False)
        self.register_buffer(
            "head_weights", torch.tensor([cfg.head_weights.get(h, 1.0) for h in HEADS]), persistent=False
        )

    @property
    def model(self) -> Ranker:
        return self.ranker

    def train(self, mode: bool = True) -> RankerTask:
        super().train(mode)
        self.towers.eval()  # no id dropout in the frozen towers
        return self

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        logits = self.ranker(ranker_inputs(self.towers, batch, with_position=True))  # (N, H)
        targets = torch.stack([batch[f"y_{h}"] for h in HEADS], dim=1)
        # Downsampled negatives count 1 / keep-rate: the probabilities stay calibrated to all rows.
        weights = 1.0 / batch["sample_rate"]
        head_weights: Tensor = self.head_weights  # type: ignore[assignment]
        total, per_head = multitask_bce(logits, targets, head_weights=head_weights, sample_weights=weights)
        logs = {"loss": float(total.detach())}
        logs.update({f"bce_{h}": float(v) for h, v in zip(HEADS, per_head.tolist(), strict=True)})
        return total, logs
