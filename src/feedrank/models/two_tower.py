# Over 300 lines: both towers, the history encoder they share and the autograd gather they use are
# one network; apart they would import each other.
"""Two-tower retrieval network: a user tower and an item tower meeting in a dot product.

    user: [user-id emb | demographic embs | mean of history item embs] → MLP → d, L2-normalised
    item: [item-id emb | publisher | category | subcategory | content type] → MLP → d, L2-normalised
          + freshness(age of the item at the request time) → d      (added after the MLP)
    score(u, i, t) = <u, content(i) + freshness(i, t)> / temperature

Freshness is added to the item embedding instead of feeding the MLP. An item's age depends on
*when* it is scored: training scores every in-batch item against every row, each at that row's
time, and an additive term makes that exact and cheap (a (B, B) gather of <u, freshness_bucket>
instead of B x B item-tower passes). Without it, in-batch negatives carry the age they had at
their own click, all young, and the model never learns that old news is unwanted. At serving time
the ANN index holds content + freshness at the snapshot time and is refreshed as items age.

The history mean reuses the item tower's id, category and publisher tables, so a user's history
and the catalog live in one space and a history of never-trained items still carries its
categories and publishers. LayerNorm, not BatchNorm: sparse features give batch statistics that
swing with the mix of ids in a batch and differ between training and one-user serving.
An optional small transformer encodes the history instead of the mean (`history_encoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from feedrank.data.features import FeatureConfig
from feedrank.data.timeline import NO_TIME
from feedrank.models.inputs import ItemInputs, UserInputs


@dataclass(frozen=True)
class TwoTowerConfig:
    dim: int = 128  # output embedding size d
    embed_dim: int = 32  # width of each input embedding table
    hidden: int = 256
    temperature: float = 0.05
    history_encoder: Literal["mean", "transformer"] = "mean"
    transformer_layers: int = 1
    transformer_heads: int = 2
    gradient_checkpointing: bool = False
    id_dropout: float = 0.1  # share of training rows whose id is hidden, to learn the features-only path
    sparse: bool = True  # sparse gradients for large embedding tables (several times faster on CPU)
    # Tables up to this many rows get dense gradients: for a small table (publishers, categories,
    # demographics) sparse bookkeeping costs more than updating every row (BENCHMARKS.md: dense_small).
    dense_table_max_rows: int = 4096
    # Let the user tower's history lookups train the shared item-id table. Off, the table learns
    # from the item side only and each step's sparse gradient has B rows instead of B x (L + 1).
    history_updates_items: bool = True
    # Initial rows of the hashed embedding tables. "zero": a row no training example touched (an
    # item published after training, a user never seen) stays equal to the padding row, the
    # "unknown" input that id dropout trains, instead of a random N(0, 1) vector that can outweigh
    # everything learned (docs/real_news.md). "normal": torch's N(0, 1). "normal" stays the default:
    # the ranker built on zero-initialised towers ranks the simulated world worse (docs/real_news.md).
    embedding_init: Literal["zero", "normal"] = "normal"


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


def table(rows: int, cfg: TwoTowerConfig) -> nn.Embedding:
    """An embedding table of `rows` x embed_dim; row 0 is padding; sparse gradients when large."""
    sparse = cfg.sparse and rows > cfg.dense_table_max_rows
    emb = nn.Embedding(rows, cfg.embed_dim, padding_idx=0, sparse=sparse)
    if cfg.embedding_init == "zero":
        nn.init.zeros_(emb.weight)
    return emb


def drop_ids(ids: Tensor, rate: float, training: bool) -> Tensor:
    """Replace a random share of ids with bucket 0 while training (0 = unknown)."""
    if not training or rate <= 0:
        return ids
    keep = torch.rand(ids.shape, device=ids.device) >= rate
    return ids * keep


class ItemTower(nn.Module):
    def __init__(self, features: FeatureConfig, cfg: TwoTowerConfig) -> None:
        super().__init__()
        e = cfg.embed_dim
        self.cfg = cfg
        self.item_id = table(features.item_buckets, cfg)
        self.publisher = table(features.publisher_buckets, cfg)
        self.category = table(features.category_buckets, cfg)
        self.subcategory = table(features.subcategory_buckets, cfg)
        self.content_type = table(features.content_type_buckets, cfg)
        # Dense, small and added after the MLP: it must be gathered for (B, B) pairs in training.
        self.freshness = nn.Embedding(features.num_freshness_buckets, cfg.dim)
        nn.init.normal_(self.freshness.weight, std=0.01)
        self.edges_us = torch.tensor(
            [round(h * 3.6e9) for h in features.freshness_edges_h], dtype=torch.int64
        )
        self.mlp = mlp(5 * e, cfg.hidden, cfg.dim)

    def content(self, items: ItemInputs) -> Tensor:
        """(..., d) L2-normalised time-independent part of the item embedding."""
        shape = items.shape
        flat = items.flatten()
        x = torch.cat(
            [
                self.item_id(drop_ids(flat.item_id, self.cfg.id_dropout, self.training)),
                self.publisher(flat.publisher),
                self.category(flat.category),
                self.subcategory(flat.subcategory),
                self.content_type(flat.content_type),
            ],
            dim=-1,
        )  # (N, 5e)
        return F.normalize(self.mlp(x), dim=-1).reshape(*shape, -1)

    def forward(self, items: ItemInputs) -> Tensor:
        """(..., d) item embeddings at the time their `freshness` buckets were computed for."""
        out: Tensor = self.content(items) + self.freshness(items.freshness)
        return out

    def freshness_bucket(self, published_us: Tensor, ts_us: Tensor) -> Tensor:
        """Bucket of items published at `published_us` seen at `ts_us` (broadcast; int64 µs).

        Same buckets as data/features.freshness_bucket: 0 unknown (published_us == NO_TIME), then
        by age in hours against the configured edges.
        """
        # Integer ages against integer edges: this runs on (B, B) pairs every training step, where a
        # float64 conversion cost a tenth of the step. A negative age (published "after" the
        # impression) falls below the first edge, into bucket 1, like a fresh item.
        edges = self.edges_us.to(published_us.device)
        bucket = 1 + torch.bucketize(ts_us - published_us, edges, right=True)
        return torch.where(published_us == NO_TIME, torch.zeros_like(bucket), bucket)


class HistoryEncoder(nn.Module):
    """(B, L) history → (B, e): masked mean, or a small transformer over the sequence."""

    def __init__(self, cfg: TwoTowerConfig, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.history_encoder == "transformer":
            layer = nn.TransformerEncoderLayer(
                d_model=cfg.embed_dim,
                nhead=cfg.transformer_heads,
                dim_feedforward=2 * cfg.embed_dim,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
            self.encoder: nn.TransformerEncoder | None = nn.TransformerEncoder(
                layer, cfg.transformer_layers, enable_nested_tensor=False
            )
            self.position = nn.Embedding(max_len, cfg.embed_dim)
        else:
            self.encoder = None

    def forward(self, seq: Tensor, mask: Tensor) -> Tensor:
        """seq (B, L, e), mask (B, L) True where an item is present → (B, e)."""
        if self.encoder is not None:
            pos = torch.arange(seq.shape[1], device=seq.device)
            x = seq + self.position(pos)[None]
            # A row with an empty history would attend to nothing (NaN); let it attend to padding,
            # the masked mean below zeroes it anyway.
            pad = ~mask
            pad = pad & mask.any(dim=1, keepdim=True)
            if self.cfg.gradient_checkpointing and self.training:
                x = checkpoint(self._encode, x, pad, use_reentrant=False)
            else:
                x = self._encode(x, pad)
            seq = x
        weights = mask.to(seq.dtype).unsqueeze(-1)  # (B, L, 1)
        return (seq * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def _encode(self, x: Tensor, pad: Tensor) -> Tensor:
        assert self.encoder is not None
        out: Tensor = self.encoder(x, src_key_padding_mask=pad)
        return out


class UserTower(nn.Module):
    def __init__(
        self, features: FeatureConfig, cfg: TwoTowerConfig, items: ItemTower, num_demographics: int
    ) -> None:
        super().__init__()
        e = cfg.embed_dim
        self.cfg = cfg
        self.user_id = table(features.user_buckets, cfg)
        self.demographics = nn.ModuleList(
            table(features.demographic_buckets, cfg) for _ in range(num_demographics)
        )
        self.items = [items]  # shared tables; a list so the tower is not registered twice
        self.history = HistoryEncoder(cfg, features.history_len)
        self.mlp = mlp((2 + num_demographics) * e, cfg.hidden, cfg.dim)

    def forward(self, users: UserInputs) -> Tensor:
        """(B, d) L2-normalised user embeddings; a user with no id and no history still gets one."""
        items = self.items[0]
        if self.cfg.history_encoder == "mean":
            hist_vec = self._mean_history(users)
        else:
            hist = (
                items.item_id(users.hist_item)
                + items.category(users.hist_cat)
                + items.publisher(users.hist_pub)
            )
            hist_vec = self.history(hist, users.hist_item > 0)  # (B, e)
        demo = [emb(users.demographics[:, k]) for k, emb in enumerate(self.demographics)]
        x = torch.cat(
            [self.user_id(drop_ids(users.user_id, self.cfg.id_dropout, self.training)), *demo, hist_vec], -1
        )
        return F.normalize(self.mlp(x), dim=-1)

    def _mean_history(self, users: UserInputs) -> Tensor:
        """(B, e) masked mean of item + category + publisher embeddings of the history.

        Three weighted `embedding_bag` sums over the shared tables: the same value as the masked
        mean of the (B, L, e) sequence without ever building that sequence, forward or backward.
        """
        items = self.items[0]
        mask = (users.hist_item > 0).to(torch.float32)  # (B, L)
        weights = mask / mask.sum(1, keepdim=True).clamp(min=1.0)
        item_weight = (
            items.item_id.weight if self.cfg.history_updates_items else items.item_id.weight.detach()
        )
        pooled = [
            F.embedding_bag(ids, weight, mode="sum", per_sample_weights=weights, sparse=sparse)
            for ids, weight, sparse in (
                (users.hist_item, item_weight, items.item_id.sparse),
                (users.hist_cat, items.category.weight, items.category.sparse),
                (users.hist_pub, items.publisher.weight, items.publisher.sparse),
            )
        ]
        out: Tensor = pooled[0] + pooled[1] + pooled[2]
        return out


class TwoTower(nn.Module):
    """The retrieval network: `user(...)` and `item(...)` embed, `score` compares."""

    def __init__(self, features: FeatureConfig, cfg: TwoTowerConfig, num_demographics: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_tower = ItemTower(features, cfg)
        self.user_tower = UserTower(features, cfg, self.item_tower, num_demographics)

    def user(self, users: UserInputs) -> Tensor:
        out: Tensor = self.user_tower(users)
        return out

    def item(self, items: ItemInputs) -> Tensor:
        out: Tensor = self.item_tower(items)
        return out

    def score(self, user_emb: Tensor, item_emb: Tensor) -> Tensor:
        """Logits <u, i> / temperature: (B, d) x (N, d) → (B, N)."""
        return user_emb @ item_emb.T / self.cfg.temperature

    @torch.no_grad()
    def vectors_at(self, content: Tensor, published_us: Tensor, now_us: int) -> Tensor:
        """(N, d) item vectors for an index snapshot: content (N, d) + freshness at time now_us."""
        buckets = self.item_tower.freshness_bucket(published_us, torch.full_like(published_us, now_us))
        out: Tensor = content + self.item_tower.freshness(buckets)
        return out

    def score_at(self, user_emb: Tensor, content: Tensor, published_us: Tensor, ts_us: Tensor) -> Tensor:
        """(B, N) logits of N items for B users, each item seen at its user's time.

        user_emb (B, d); content (N, d) from `item_tower.content`; published_us (N,); ts_us (B,).
        """
        fresh = self.freshness_at(user_emb, published_us, ts_us)
        return (user_emb @ content.T + fresh) / self.cfg.temperature

    def freshness_at(self, user_emb: Tensor, published_us: Tensor, ts_us: Tensor) -> Tensor:
        """(B, N) <u_b, freshness(bucket of item n at time t_b)>, without building the (B, N) buckets.

        Training calls this on (B, B) pairs every step, where bucketing a million ages and gathering
        cost a quarter of the step. Instead: sort the items newest first. For row b the age
        t_b - p_n then grows along the sorted items, so the bucket is a step function of the sorted
        position, with its steps where the age crosses each edge, found by a (B, edges) binary
        search (`_StepGather`). Exact up to float rounding of the sums (tested against the
        bucket-and-gather definition, values and gradients).
        """
        tower = self.item_tower
        per_bucket = user_emb @ tower.freshness.weight.T  # (B, num_buckets); bucket 0 = unknown age
        order = torch.argsort(published_us, descending=True, stable=True)
        newest_first = published_us[order]
        # NO_TIME is the smallest int64: unknown publication times sort last.
        num_known = int((newest_first != NO_TIME).sum())
        oldest_first = newest_first[:num_known].flip(0)
        edges = tower.edges_us.to(published_us.device)
        # Items younger than edge k at t_b: p_n > t_b - edge_k. An age below the first edge
        # (negative ages included) is bucket 1, at or past edge k bucket k + 2.
        limits = ts_us[:, None] - edges[None, :]  # (B, K)
        younger = num_known - torch.searchsorted(oldest_first, limits.contiguous(), right=True)  # (B, K)
        out: Tensor = _StepGather.apply(per_bucket, younger, order, num_known)  # type: ignore[no-untyped-call]
        return out


class _StepGather(torch.autograd.Function):
    """out[b, order[j]] = per_bucket[b, bucket of sorted position j for row b].

    Sorted position j < num_known is in bucket 1 + #{k : younger[b, k] <= j}; positions from
    num_known on (unknown publication time) are bucket 0. Forward writes each row's value changes
    at its step positions and takes a cumulative sum; backward sums the upstream gradient over
    each bucket's run of positions from one cumulative sum. Both are a few passes over (B, N) with
    no (B, N) integer tensor, where autograd through cumsum and a column gather took twice as long.
    """

    @staticmethod
    def forward(per_bucket: Tensor, younger: Tensor, order: Tensor, num_known: int) -> Tensor:
        rows, num_items = per_bucket.shape[0], order.shape[0]
        steps = per_bucket.new_zeros((rows, num_known + 1))
        steps[:, 0] = per_bucket[:, 1]
        steps.scatter_add_(1, younger, per_bucket[:, 2:] - per_bucket[:, 1:-1])
        out = per_bucket.new_empty((rows, num_items))
        out[:, order[:num_known]] = torch.cumsum(steps[:, :num_known], dim=1)
        out[:, order[num_known:]] = per_bucket[:, :1]
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, younger, order, num_known = inputs
        ctx.save_for_backward(younger, order)
        ctx.num_known = num_known

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        younger, order = ctx.saved_tensors
        num_known: int = ctx.num_known
        in_order = grad.index_select(1, order)  # (B, N) newest first
        running = torch.cumsum(in_order[:, :num_known], dim=1)  # running[:, j] = sum of positions <= j
        rows = grad.shape[0]
        if num_known == 0:  # every publication time unknown: all of the gradient is bucket 0's
            known_buckets = grad.new_zeros((rows, younger.shape[1] + 1))
            return torch.cat([grad.sum(dim=1, keepdim=True), known_buckets], dim=1), None, None, None
        ends = torch.cat([younger, younger.new_full((rows, 1), num_known)], dim=1)  # (B, K + 1)
        # Sum of positions < p: running[:, p - 1], or 0 at p = 0.
        upto = torch.gather(running, 1, (ends - 1).clamp(min=0)) * (ends > 0)
        upto = torch.cat([upto.new_zeros((rows, 1)), upto], dim=1)  # (B, K + 2)
        known_buckets = upto[:, 1:] - upto[:, :-1]  # buckets 1 .. K + 1
        unknown_bucket = in_order[:, num_known:].sum(dim=1, keepdim=True)
        return torch.cat([unknown_bucket, known_buckets], dim=1), None, None, None
