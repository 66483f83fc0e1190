"""Ranker: one logit per head, the position term only when positions are given, feed score."""

from __future__ import annotations

import torch

from feedrank.artifacts.config import RankerRunConfig, ranker_config
from feedrank.config import to_dict
from feedrank.data.features import FeatureConfig
from feedrank.models.ranker import HEADS, ColumnNorm, Ranker, RankerConfig, RankerInputs, feed_score

FEATURES = FeatureConfig(publisher_buckets=20, category_buckets=10)


def inputs(n: int, position: torch.Tensor | None = None) -> RankerInputs:
    gen = torch.Generator().manual_seed(0)
    return RankerInputs(
        user_emb=torch.randn(n, 16, generator=gen),
        item_emb=torch.randn(n, 16, generator=gen),
        publisher=torch.randint(0, 20, (n,), generator=gen),
        category=torch.randint(0, 10, (n,), generator=gen),
        content_type=torch.randint(0, 16, (n,), generator=gen),
        freshness=torch.randint(0, 10, (n,), generator=gen),
        counters=torch.randn(n, 9, generator=gen),
        position=position,
    )


def test_logits_per_head_and_position_term() -> None:
    torch.manual_seed(0)
    ranker = Ranker(FEATURES, RankerConfig(), tower_dim=16, num_counters=9).eval()
    with torch.no_grad():
        ranker.position_bias.weight.normal_()
    plain = ranker(inputs(6))
    assert plain.shape == (6, len(HEADS))
    shifted = ranker(inputs(6, position=torch.full((6,), 3)))
    assert torch.allclose(shifted - plain, ranker.position_bias.weight[3].expand(6, -1), atol=1e-5)


def test_feed_score_is_the_weighted_sum() -> None:
    probs = torch.tensor([[0.5, 0.2, 0.1, 0.05], [0.1, 0.0, 0.0, 0.5]])
    weights = {"click": 1.0, "long_dwell": 2.0, "share": 5.0, "hide": -1.0}
    expected = torch.tensor([0.5 + 0.4 + 0.5 - 0.05, 0.1 - 0.5])
    assert torch.allclose(feed_score(probs, weights), expected)


def test_a_ranker_without_tower_inputs_ignores_the_tower_vectors() -> None:
    torch.manual_seed(0)
    ranker = Ranker(FEATURES, RankerConfig(tower_inputs=False), tower_dim=16, num_counters=9).eval()
    x = inputs(5)
    other = RankerInputs(**{**x.__dict__, "user_emb": -x.user_emb, "item_emb": torch.zeros_like(x.item_emb)})
    assert torch.equal(ranker(x), ranker(other))
    with_towers = Ranker(FEATURES, RankerConfig(), tower_dim=16, num_counters=9).eval()
    assert not torch.allclose(with_towers(x), with_towers(other))


def test_column_norm_scales_each_counter_alone_and_serves_row_by_row() -> None:
    torch.manual_seed(0)
    ranker = Ranker(FEATURES, RankerConfig(), tower_dim=16, num_counters=9)
    assert RankerConfig().counter_norm == "column" and isinstance(ranker.counter_norm, ColumnNorm)
    x = torch.randn(64, 9) * torch.arange(1, 10) + 100.0  # columns of very different scales
    out = ranker.counter_norm(x)  # training: batch statistics, each column standardised
    assert torch.allclose(out.mean(0), torch.zeros(9), atol=1e-4)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(9), atol=1e-3)
    # a column's value does not depend on the other columns of its row (unlike a LayerNorm)
    bumped = x.clone()
    bumped[:, 0] *= 50.0
    assert torch.allclose(ranker.counter_norm(bumped)[:, 1:], out[:, 1:], atol=1e-5)
    layer = Ranker(FEATURES, RankerConfig(counter_norm="layer"), tower_dim=16, num_counters=9).counter_norm
    assert not torch.allclose(layer(bumped)[:, 1:], layer(x)[:, 1:], atol=1e-2)
    assert ranker.counter_norm(x[:1]).shape == (1, 9)  # a training batch of one row works
    # serving (eval): running statistics, so a row's scores do not depend on the rows beside it
    ranker.eval()
    batch = inputs(6)
    first = {k: v[:1] for k, v in batch.__dict__.items() if v is not None}
    alone = ranker(RankerInputs(**first))
    assert torch.allclose(ranker(batch)[:1], alone, atol=1e-5)


def test_a_saved_ranker_config_without_counter_norm_keeps_its_layer_norm() -> None:
    saved = to_dict(RankerRunConfig())
    del saved["model"]["counter_norm"]
    assert ranker_config(saved, "test").model.counter_norm == "layer"
    assert ranker_config(to_dict(RankerRunConfig()), "test").model.counter_norm == "column"
