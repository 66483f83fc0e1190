"""The ranking Task: a multi-task ranker over a frozen two-tower's embeddings.

The towers are frozen while the ranker trains, so their outputs are computed once before training
instead of in every step of every epoch: one user embedding per request (a request has one user
at one time) and one content embedding per catalog item; a row's item embedding is its item's
content plus the (frozen) freshness term of its bucket, exactly what `TwoTower.item` returns.
Batches then carry indices into those tables instead of 50-item histories.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from feedrank.artifacts.config import RankerLossConfig
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.ranker import HEADS, Ranker, RankerInputs
from feedrank.models.two_tower import TwoTower
from feedrank.progress import advance
from feedrank.train.batch_types import RankerBatch
from feedrank.train.losses import grouped_softmax_loss, multitask_bce


class TowerTables(nn.Module):
    """Frozen tower outputs: user embedding per request, content embedding per catalog item."""

    def __init__(self, users: Tensor, content: Tensor, freshness: Tensor) -> None:
        super().__init__()
        self.register_buffer("users", users, persistent=False)  # (R, d)
        self.register_buffer("content", content, persistent=False)  # (I, d)
        self.register_buffer("freshness", freshness, persistent=False)  # (buckets, d)

    def inputs(self, batch: RankerBatch, with_position: bool) -> RankerInputs:
        users: Tensor = self.users  # type: ignore[assignment]
        content: Tensor = self.content  # type: ignore[assignment]
        freshness: Tensor = self.freshness  # type: ignore[assignment]
        return RankerInputs(
            user_emb=users[batch.request_index],
            item_emb=content[batch.item_row] + freshness[batch.item.freshness],
            publisher=batch.item.publisher,
            category=batch.item.category,
            content_type=batch.item.content_type,
            freshness=batch.item.freshness,
            counters=batch.counters,
            position=batch.position if with_position else None,
            sources=batch.sources,
        )


@torch.no_grad()
def tower_tables(towers: TwoTower, user_batches: list[UserInputs], catalog_items: ItemInputs) -> TowerTables:
    """Run the frozen towers once: users (in request order, given in batches) and the catalog."""
    towers.eval()
    embedded = []
    for batch in user_batches:
        embedded.append(towers.user(batch))
        advance("frozen user tower (request batches)", len(embedded), len(user_batches))
    users = torch.cat(embedded)
    content = towers.item_tower.content(catalog_items)
    return TowerTables(users, content, towers.item_tower.freshness.weight.detach().clone())


class RankerTask(nn.Module):
    """Owns the ranker (trained) and the frozen tower tables it reads."""

    def __init__(self, ranker: Ranker, tables: TowerTables, cfg: RankerLossConfig) -> None:
        super().__init__()
        self.ranker = ranker
        self.tables = tables
        self.cfg = cfg
        self.register_buffer(
            "head_weights", torch.tensor([cfg.head_weights.get(h, 1.0) for h in HEADS]), persistent=False
        )
        unknown = sorted(set(cfg.unshown_heads) - set(HEADS))
        if unknown:
            raise ValueError(f"loss.unshown_heads names {unknown}, not heads of the ranker {list(HEADS)}")
        # (H,) 1 for a head that learns from unshown negatives, 0 for one fitted to shown rows only
        self.register_buffer(
            "unshown_heads", torch.tensor([float(h in cfg.unshown_heads) for h in HEADS]), persistent=False
        )

    @property
    def model(self) -> Ranker:
        return self.ranker

    def loss(self, batch: RankerBatch) -> tuple[Tensor, dict[str, float]]:
        logits = self.ranker(self.tables.inputs(batch, with_position=True))  # (N, H)
        # Downsampled negatives count 1 / keep-rate: the probabilities stay calibrated to all rows.
        weights = 1.0 / batch.sample_rate
        head_weights: Tensor = self.head_weights  # type: ignore[assignment]
        total, per_head = multitask_bce(
            logits, batch.labels, head_weights=head_weights, sample_weights=self.row_weights(batch, weights)
        )
        logs = {}
        if self.cfg.listwise_weight > 0:
            # The click head also ranks each query's rows against each other (a softmax over the
            # click and its negatives): next-click ranking orders a pool, which BCE on each row alone
            # does not ask for.
            listwise = grouped_softmax_loss(logits[:, 0], batch.labels[:, 0], batch.request_index)
            total = total + self.cfg.listwise_weight * listwise
            logs["listwise"] = float(listwise.detach())
        logs["loss"] = float(total.detach())
        logs.update({f"bce_{h}": float(v) for h, v in zip(HEADS, per_head.tolist(), strict=True)})
        return total, logs

    def row_weights(self, batch: RankerBatch, weights: Tensor) -> Tensor:
        """(N,) `weights`, or (N, H) when unshown rows count for some heads only or at another weight."""
        unshown_heads: Tensor = self.unshown_heads  # type: ignore[assignment]
        if batch.shown is None or (bool(unshown_heads.all()) and self.cfg.unshown_weight == 1.0):
            return weights
        unshown = (1.0 - batch.shown)[:, None]  # (N, 1)
        scale = 1.0 - unshown + unshown * self.cfg.unshown_weight * unshown_heads[None, :]  # (N, H)
        return weights[:, None] * scale
