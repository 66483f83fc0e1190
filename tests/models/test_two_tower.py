"""Two-tower: shapes, cold users and items, and exact time-consistent in-batch scoring."""

from __future__ import annotations

import torch

from feedrank.data.features import FeatureConfig
from feedrank.data.timeline import NO_TIME
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.two_tower import TwoTower, TwoTowerConfig

FEATURES = FeatureConfig(user_buckets=100, item_buckets=200, publisher_buckets=20, category_buckets=10)
H_US = 3_600_000_000


def model(**kw: object) -> TwoTower:
    """An untrained model with random (not zero) embeddings, so that its inputs make a difference."""
    torch.manual_seed(0)
    kw = {"embedding_init": "normal", **kw}
    return TwoTower(FEATURES, TwoTowerConfig(dim=16, embed_dim=8, hidden=32, **kw), num_demographics=4).eval()  # type: ignore[arg-type]


def users(batch: int, history: int = 50, empty: bool = False) -> UserInputs:
    gen = torch.Generator().manual_seed(1)
    hist = torch.randint(1, 200, (batch, history), generator=gen)
    if empty:
        hist = torch.zeros_like(hist)
    return UserInputs(
        user_id=torch.randint(1, 100, (batch,), generator=gen),
        demographics=torch.randint(0, 64, (batch, 4), generator=gen),
        hist_item=hist,
        hist_cat=hist % 10,
        hist_pub=hist % 20,
    )


def items(n: int, published_us: torch.Tensor, at_us: torch.Tensor) -> ItemInputs:
    ids = torch.arange(1, n + 1)
    fresh = model().item_tower.freshness_bucket(published_us, at_us)
    return ItemInputs(ids, ids % 20, ids % 10, ids % 7, ids % 3, fresh, published_us)


def test_shapes_and_normalisation() -> None:
    m = model()
    u = m.user(users(5))
    assert u.shape == (5, 16)
    assert torch.allclose(u.norm(dim=-1), torch.ones(5), atol=1e-5)
    v = m.item(items(7, torch.zeros(7, dtype=torch.int64), torch.full((7,), H_US)))
    assert v.shape == (7, 16)
    assert m.score(u, v).shape == (5, 7)


def test_cold_user_and_cold_item_get_finite_embeddings() -> None:
    m = model()
    cold = users(3, empty=True)
    no_id = UserInputs(
        user_id=torch.zeros(3, dtype=torch.int64),
        demographics=torch.zeros(3, 4, dtype=torch.int64),
        hist_item=cold.hist_item,
        hist_cat=cold.hist_cat,
        hist_pub=cold.hist_pub,
    )
    assert torch.isfinite(m.user(no_id)).all()
    unknown_item = ItemInputs(*(torch.zeros(2, dtype=torch.int64) for _ in range(6)))
    assert torch.isfinite(m.item(unknown_item)).all()
    for encoder in ("mean", "transformer"):
        assert torch.isfinite(model(history_encoder=encoder).user(no_id)).all()


def test_score_at_equals_scoring_each_item_at_each_users_time() -> None:
    m = model()
    u = m.user(users(4))
    published = torch.tensor([0, 5 * H_US, 40 * H_US, NO_TIME, 100 * H_US, 2 * H_US])
    ts = torch.tensor([6 * H_US, 50 * H_US, 200 * H_US, 41 * H_US])
    base = items(6, published, torch.zeros(6, dtype=torch.int64))
    got = m.score_at(u, m.item_tower.content(base), published, ts)  # (4, 6)
    for b in range(4):
        at = items(6, published, ts[b].expand(6))  # the same items with freshness at user b's time
        expected = u[b : b + 1] @ m.item(at).T / m.cfg.temperature
        assert torch.allclose(got[b], expected[0], atol=1e-5)


def test_freshness_at_equals_bucket_and_gather_with_gradients() -> None:
    """The sorted step-function path equals the direct definition, values and gradients, including
    ages exactly on an edge, negative ages, unknown publication times and tied publication times."""
    m = model()
    gen = torch.Generator().manual_seed(3)
    ts = torch.randint(200 * H_US, 400 * H_US, (64,), generator=gen)
    published = ts[torch.randint(0, 64, (96,), generator=gen)] - torch.randint(
        -2 * H_US, 180 * H_US, (96,), generator=gen
    )
    published[:8] = ts[:8] - H_US * torch.tensor([1, 3, 6, 12, 24, 48, 96, 168])  # on the edges
    published[8:12] = NO_TIME
    published[12:16] = published[16]  # ties
    u1 = torch.nn.functional.normalize(torch.randn(64, m.cfg.dim, generator=gen), dim=-1).requires_grad_()
    u2 = u1.detach().clone().requires_grad_()
    fast = m.freshness_at(u1, published, ts)
    buckets = m.item_tower.freshness_bucket(published[None, :], ts[:, None])
    direct = torch.gather(u2 @ m.item_tower.freshness.weight.T, 1, buckets)
    assert torch.allclose(fast, direct, atol=1e-6)
    upstream = torch.randn(64, 96, generator=gen)
    (fast * upstream).sum().backward()
    fast_grads = [u1.grad, m.item_tower.freshness.weight.grad]
    m.item_tower.freshness.weight.grad = None
    (direct * upstream).sum().backward()
    for got, expected in zip(fast_grads, [u2.grad, m.item_tower.freshness.weight.grad], strict=True):
        assert got is not None and expected is not None
        assert torch.allclose(got, expected, atol=1e-5)
    # Every publication time unknown: everything is bucket 0.
    unknown = torch.full((5,), NO_TIME)
    u3 = u2.detach()[:3].clone().requires_grad_()
    only = m.freshness_at(u3, unknown, ts[:3])
    only.sum().backward()
    assert torch.allclose(only, (u3 @ m.item_tower.freshness.weight[0])[:, None].expand(3, 5), atol=1e-6)
    assert u3.grad is not None and torch.allclose(u3.grad, 5 * m.item_tower.freshness.weight[0].expand(3, -1))
    # The control: one bucket off changes the values.
    assert not torch.allclose(fast, torch.gather(u2 @ m.item_tower.freshness.weight.T, 1, (buckets + 1) % 10))


def test_transformer_history_changes_with_order_mean_does_not() -> None:
    u = users(2)
    flipped = UserInputs(
        u.user_id, u.demographics, u.hist_item.flip(1), u.hist_cat.flip(1), u.hist_pub.flip(1)
    )
    mean = model()
    assert torch.allclose(mean.user(u), mean.user(flipped), atol=1e-5)
    transformer = model(history_encoder="transformer")
    assert not torch.allclose(transformer.user(u), transformer.user(flipped), atol=1e-4)


def test_gradient_checkpointing_matches_plain_forward_and_gradients() -> None:
    plain = model(history_encoder="transformer", id_dropout=0.0).train()
    ckpt = model(history_encoder="transformer", id_dropout=0.0, gradient_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    u = users(3)
    out_plain, out_ckpt = plain.user(u), ckpt.user(u)
    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    out_plain.pow(2).sum().backward()
    out_ckpt.pow(2).sum().backward()
    compared = 0
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        assert (p1.grad is None) == (p2.grad is None), name  # the same parameters got gradients
        if p1.grad is not None and p2.grad is not None:
            g1, g2 = (g.to_dense() if g.is_sparse else g for g in (p1.grad, p2.grad))
            assert torch.allclose(g1, g2, atol=1e-6), name
            compared += 1
    assert compared > 0


def test_the_bag_mean_equals_the_masked_sequence_mean() -> None:
    m = model()
    u = users(6)
    hist = u.hist_item.clone()
    hist[:2, :30] = 0  # shorter histories
    hist[2] = 0  # and an empty one
    u = UserInputs(u.user_id, u.demographics, hist, u.hist_cat * (hist > 0), u.hist_pub * (hist > 0))
    items = m.item_tower
    seq = items.item_id(u.hist_item) + items.category(u.hist_cat) + items.publisher(u.hist_pub)
    expected = m.user_tower.history(seq, u.hist_item > 0)
    assert torch.allclose(m.user_tower._mean_history(u), expected, atol=1e-6)


def test_tower_freshness_buckets_equal_the_feature_code() -> None:
    from feedrank.data.features import freshness_bucket

    gen = torch.Generator().manual_seed(0)
    published = torch.randint(0, 400 * H_US, (200,), generator=gen)
    published[:10] = NO_TIME
    ts = torch.randint(0, 400 * H_US, (200,), generator=gen)
    ts[10:20] = published[10:20] - 5  # published after the impression
    ts[20:30] = published[20:30] + 3 * H_US  # exactly on an edge
    got = model().item_tower.freshness_bucket(published, ts)
    expected = freshness_bucket(ts.numpy(), published.numpy(), FEATURES.freshness_edges_h)
    assert got.tolist() == expected.tolist()


def test_an_id_no_training_step_touched_embeds_like_the_unknown_id() -> None:
    m = model(embedding_init="zero", id_dropout=0.0).train()
    optimizer = torch.optim.SGD(m.parameters(), lr=0.5)
    trained = items(5, torch.zeros(5, dtype=torch.int64), torch.full((5,), H_US))
    for _ in range(3):
        optimizer.zero_grad()
        u, v = m.user(users(5, history=3)), m.item(trained)
        torch.nn.functional.cross_entropy(m.score(u, v), torch.arange(5)).backward()
        optimizer.step()
    m.eval()
    assert m.item_tower.item_id.weight[1:6].abs().sum() > 0  # the trained ids moved
    ids = torch.tensor([0, 150])  # the unknown id, and one no step touched
    unseen = ItemInputs(ids, *(torch.zeros(2, dtype=torch.int64) for _ in range(5)))
    v = m.item(unseen)
    assert torch.equal(v[0], v[1])
    # with torch's N(0, 1) rows the untouched id is an arbitrary vector instead
    r = model(embedding_init="normal").item(unseen)
    assert not torch.allclose(r[0], r[1])
