"""Multi-task ranker: DCN-v2 over tower embeddings, content features and engagement counters.

    x = [u | v | u*v | publisher | category | content type | freshness | counters]
    x_{l+1} = x_0 * (U_l V_l^T x_l + b_l) + x_l    (cross layers, low rank: explicit feature crosses)
    h = MLP([x_L | MLP_deep(x_0)])                  (stacked cross + parallel deep)
    logits = heads(h) + position_bias(position)    (the position term only while training)

u and v are the two-tower user and item embeddings (the ranker refines retrieval's view of a pair
rather than relearning it). Position enters through a separate shallow term so that, at serving
time, when there is no position yet, the heads score every candidate as if shown in the same slot:
this keeps the position bias of the logged data out of the learned relevance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from feedrank.data.features import FeatureConfig

HEADS = ("click", "long_dwell", "share", "hide")
MAX_POSITION = 64


@dataclass(frozen=True)
class RankerConfig:
    embed_dim: int = 16
    cross_layers: int = 2
    # Rank of each cross layer's weight (DCN-v2's low-rank form; 0 = full rank). Ranking 500
    # candidates per request must fit the serving budget, and a full-rank cross over the ~460
    # input features costs (input width)^2 per layer; rank r costs 2 x width x r. BENCHMARKS.md
    # ("Ranker size") has the latency and quality of the choice.
    cross_rank: int = 32
    deep_hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    sparse: bool = True
    # Read the two-tower's user and item vectors. Off when the towers were trained on the same
    # clicks the ranker learns from: their dot product is then near-perfect on the training rows
    # and worthless on new items, and the ranker learns to trust it (docs/real_news.md).
    tower_inputs: bool = True
    # How the dense counters are scaled: "column" standardises each counter over the batch
    # (BatchNorm, running statistics in serving); "layer" is a LayerNorm across one row's counters,
    # which makes each counter's value depend on the others in its row: a user's category share
    # beside an item's large click counts shrank to nearly nothing, and the served feed followed
    # the items' counts for everyone (docs/served_feed.md). Saved rankers without the key are "layer".
    counter_norm: Literal["column", "layer"] = "column"


@dataclass(frozen=True)
class RankerInputs:
    user_emb: Tensor  # (N, d) two-tower user embedding
    item_emb: Tensor  # (N, d) two-tower item embedding
    publisher: Tensor  # (N,) int64
    category: Tensor  # (N,) int64
    content_type: Tensor  # (N,) int64
    freshness: Tensor  # (N,) int64
    counters: Tensor  # (N, F) float32 dense features, in the order of Ranker.counter_names
    position: Tensor | None = None  # (N,) int64 slot in the slate, training only
    # (N, S) which candidate sources listed the item and their scores (`CandidateSet.features()`);
    # only for a ranker built with num_sources = S > 0
    sources: Tensor | None = None


class ColumnNorm(nn.BatchNorm1d):
    """Per-column standardisation (BatchNorm1d) that also takes a training batch of one row, with
    the running statistics, where batch statistics do not exist."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        out: Tensor = super().forward(x)
        return out


class CrossNetwork(nn.Module):
    """DCN-v2 cross layers: x_{l+1} = x_0 ⊙ (W x_l + b) + x_l, with W = U Vᵀ when rank > 0."""

    def __init__(self, dim: int, num_layers: int, rank: int = 0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(dim, dim)
            if rank <= 0
            else nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim))
            for _ in range(num_layers)
        )

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class Ranker(nn.Module):
    """Returns one logit per head: (N, len(HEADS)).

    `counter_names` names the dense input columns (data/history.py) so that whoever feeds the
    ranker computes the same columns it was trained on; unnamed, there are `num_counters` of them.
    `num_sources` > 0 adds the candidate-source columns (membership 0/1 and source scores), taken
    as they are: the flags must not be normalised together with the counters.
    """

    click_calibration: Tensor  # (2,) buffer: Platt (scale, bias) of the click logit

    def __init__(
        self,
        features: FeatureConfig,
        cfg: RankerConfig,
        tower_dim: int,
        num_counters: int,
        counter_names: Sequence[str] | None = None,
        num_sources: int = 0,
    ) -> None:
        super().__init__()
        if counter_names is not None and len(counter_names) != num_counters:
            raise ValueError(f"{len(counter_names)} counter names for {num_counters} counters")
        e, sparse = cfg.embed_dim, cfg.sparse
        self.cfg = cfg
        self.num_counters = num_counters
        self.num_sources = num_sources
        self.counter_names = tuple(counter_names) if counter_names is not None else None
        self.publisher = nn.Embedding(features.publisher_buckets, e, padding_idx=0, sparse=sparse)
        self.category = nn.Embedding(features.category_buckets, e, padding_idx=0, sparse=sparse)
        self.content_type = nn.Embedding(features.content_type_buckets, e, padding_idx=0, sparse=sparse)
        self.freshness = nn.Embedding(features.num_freshness_buckets, e, padding_idx=0, sparse=sparse)
        self.counter_norm: nn.Module = (
            ColumnNorm(num_counters) if cfg.counter_norm == "column" else nn.LayerNorm(num_counters)
        )
        in_dim = 3 * tower_dim * cfg.tower_inputs + 4 * e + num_counters + num_sources
        self.cross = CrossNetwork(in_dim, cfg.cross_layers, cfg.cross_rank)
        deep: list[nn.Module] = []
        width = in_dim
        for hidden in cfg.deep_hidden:
            deep += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = hidden
        self.deep = nn.Sequential(*deep)
        self.heads = nn.Sequential(nn.Linear(in_dim + width, 64), nn.ReLU(), nn.Linear(64, len(HEADS)))
        self.position_bias = nn.Embedding(MAX_POSITION, len(HEADS))
        nn.init.zeros_(self.position_bias.weight)
        # Platt scaling of the click logit, (scale, bias), fitted after training on held-out
        # impressions (eval/calibrate.py): sampled catalog negatives shift the learned base rate.
        # Identity until fitted; applied in eval mode only, so training always sees raw logits.
        # It travels in the state dict; one saved before it existed loads with the identity.
        self.register_buffer("click_calibration", torch.tensor([1.0, 0.0]))
        self.register_load_state_dict_pre_hook(_identity_calibration_if_missing)  # type: ignore[no-untyped-call]

    def forward(self, x: RankerInputs) -> Tensor:
        """(N, len(HEADS)) logits; adds the position term only when positions are given."""
        if self.num_sources and (x.sources is None or x.sources.shape[-1] != self.num_sources):
            got = None if x.sources is None else tuple(x.sources.shape)
            raise ValueError(f"this ranker reads {self.num_sources} source columns; got {got}")
        x0 = torch.cat(
            [
                *((x.user_emb, x.item_emb, x.user_emb * x.item_emb) if self.cfg.tower_inputs else ()),
                self.publisher(x.publisher),
                self.category(x.category),
                self.content_type(x.content_type),
                self.freshness(x.freshness),
                self.counter_norm(x.counters),
                *([x.sources] if self.num_sources and x.sources is not None else []),
            ],
            dim=-1,
        )  # (N, in_dim)
        logits: Tensor = self.heads(torch.cat([self.cross(x0), self.deep(x0)], dim=-1))
        if x.position is not None:
            logits = logits + self.position_bias(x.position.clamp(0, MAX_POSITION - 1))
        if not self.training:
            scale, bias = self.click_calibration[0], self.click_calibration[1]
            logits = torch.cat([logits[:, :1] * scale + bias, logits[:, 1:]], dim=-1)
        return logits


def _identity_calibration_if_missing(
    module: nn.Module, state: dict[str, Tensor], prefix: str, *_: object
) -> None:
    state.setdefault(f"{prefix}click_calibration", torch.tensor([1.0, 0.0]))


def feed_score(probabilities: Tensor, weights: dict[str, float]) -> Tensor:
    """(N,) weighted combination of head probabilities (N, len(HEADS)); a negative weight demotes."""
    w = torch.tensor(
        [weights.get(h, 0.0) for h in HEADS], dtype=probabilities.dtype, device=probabilities.device
    )
    return probabilities @ w
