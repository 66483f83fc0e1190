"""Optional TorchRec backend of the two-tower: every id table in one `EmbeddingBagCollection`,
which TorchRec's planner can shard across ranks (`shard_tables`).

Install with `scripts/install-torchrec`: the `torchrec` extra (what torchrec imports), then
torchrec 1.8.0 and fbgemm-gpu-cpu 1.8.0 without their dependencies (their metadata asks for the
CUDA fbgemm-gpu; these are the versions that run on CPU with torch 2.13). Nothing else needs them.

The model is the plain two-tower with a mean history encoder; what differs is where the tables
live. EBC tables have no padding row (a dropped id looks up row 0, which trains) and use
TorchRec's init, and each history is pooled over its real items as a jagged bag (for the mean
encoder the same function). Unsharded, the tables give sparse gradients to the loop's Adagrad,
as `nn.Embedding(sparse=True)` does. Sharded, the planner places whole tables on ranks
(table-wise: the only layout fbgemm's CPU kernels offer; row-wise needs fbgemm-gpu on CUDA) and
the tables are updated by Adagrad fused into the backward pass, so the loop's learning-rate
schedule does not reach them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from feedrank.data.features import DEMOGRAPHICS, FeatureConfig
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.two_tower import ItemTower, TwoTower, TwoTowerConfig, drop_ids, mlp


def torchrec_missing() -> str | None:
    """Why the TorchRec backend cannot run here (None when torchrec and fbgemm-gpu import)."""
    for name in ("torchrec", "fbgemm_gpu"):
        try:
            importlib.import_module(name)
        except Exception as exc:  # an ImportError, or a wheel built for another torch
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"{name} does not import: {type(exc).__name__}: {first}"
    return None


def table_specs(features: FeatureConfig) -> dict[str, tuple[int, list[str]]]:
    """Table name → (rows, the features that look it up)."""
    f = features
    return {
        "user_id": (f.user_buckets, ["user_id"]),
        **{f"demo_{k}": (f.demographic_buckets, [f"user_demo_{k}"]) for k in range(len(DEMOGRAPHICS))},
        "item_id": (f.item_buckets, ["item_id", "hist_item"]),
        "publisher": (f.publisher_buckets, ["item_pub", "hist_pub"]),
        "category": (f.category_buckets, ["item_cat", "hist_cat"]),
        "subcategory": (f.subcategory_buckets, ["item_subcat"]),
        "content_type": (f.content_type_buckets, ["item_type"]),
    }


def torchrec_two_tower(features: FeatureConfig, cfg: TwoTowerConfig, device: str = "cpu") -> TorchRecTwoTower:
    """The two-tower with its id tables in one EBC (sparse gradients). `device="meta"` leaves the
    tables unallocated, for `shard_tables` to place."""
    import torchrec

    specs = table_specs(features)
    tables = [
        torchrec.EmbeddingBagConfig(
            name=name,
            num_embeddings=rows,
            embedding_dim=cfg.embed_dim,
            feature_names=names,
            pooling=torchrec.PoolingType.MEAN,
        )
        for name, (rows, names) in specs.items()
    ]
    ebc = torchrec.EmbeddingBagCollection(tables, device=torch.device(device))
    for m in ebc.modules():
        if isinstance(m, nn.EmbeddingBag):
            m.sparse = True  # sparse gradients → the loop's Adagrad, as nn.Embedding(sparse=True)
    names = [n for _, feature_names in specs.values() for n in feature_names]
    return TorchRecTwoTower(features, cfg, ebc, names, torchrec.KeyedJaggedTensor)


def shard_tables(model: TorchRecTwoTower, sparse_lr: float, group: Any = None) -> str:
    """Shard `model`'s tables table-wise over the ranks of `group` (default: the world) with
    TorchRec's planner; the sharded tables train with Adagrad fused into backward. Returns the plan.

    Every rank must call it (the planner agrees on one plan); `model` should come from
    `torchrec_two_tower(..., device="meta")` so no rank allocates tables it does not own.
    """
    import torch.distributed as dist
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.embeddingbag import (
        EmbeddingBagCollectionSharder,
    )
    from torchrec.distributed.planner import (
        EmbeddingShardingPlanner,
        ParameterConstraints,
        Topology,
    )
    from torchrec.distributed.types import ShardingType
    from torchrec.optim.apply_optimizer_in_backward import (
        apply_optimizer_in_backward,
    )

    group = group or dist.GroupMember.WORLD
    world = dist.get_world_size(group)
    apply_optimizer_in_backward(torch.optim.Adagrad, model.ebc.parameters(), {"lr": sparse_lr, "eps": 1e-10})
    table_wise = [ShardingType.TABLE_WISE.value]
    constraints = {
        name: ParameterConstraints(sharding_types=table_wise) for name in table_specs(model.features)
    }
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=world, compute_device="cpu"), constraints=constraints
    )
    sharders = [EmbeddingBagCollectionSharder()]
    plan = planner.collective_plan(model.ebc, sharders, group)
    model.ebc = DistributedModelParallel(model.ebc, device=torch.device("cpu"), plan=plan, sharders=sharders)
    model.sharded = True
    return str(plan)


class TorchRecItemTower(ItemTower):
    """ItemTower whose id tables live in the EBC: keeps freshness and the MLP."""

    def __init__(self, features: FeatureConfig, cfg: TwoTowerConfig, owner: TorchRecTwoTower) -> None:
        nn.Module.__init__(self)  # not ItemTower.__init__: it would allocate the tables the EBC holds
        self.cfg = cfg
        self.freshness = nn.Embedding(features.num_freshness_buckets, cfg.dim)
        nn.init.normal_(self.freshness.weight, std=0.01)
        self.edges_us = torch.tensor(
            [round(h * 3.6e9) for h in features.freshness_edges_h], dtype=torch.int64
        )
        self.mlp = mlp(5 * cfg.embed_dim, cfg.hidden, cfg.dim)
        self.owner = [owner]  # a list: the EBC is registered once, on the TwoTower

    def content(self, items: ItemInputs) -> Tensor:
        shape, flat = items.shape, items.flatten()
        ids = {
            "item_id": drop_ids(flat.item_id, self.cfg.id_dropout, self.training),
            "item_pub": flat.publisher,
            "item_cat": flat.category,
            "item_subcat": flat.subcategory,
            "item_type": flat.content_type,
        }
        pooled = self.owner[0].lookup({k: (v, torch.ones_like(v)) for k, v in ids.items()}, len(flat.item_id))
        x = torch.cat([pooled[k] for k in ids], dim=-1)  # (N, 5e)
        return F.normalize(self.mlp(x), dim=-1).reshape(*shape, -1)


class TorchRecTwoTower(TwoTower):
    """The two-tower over one EmbeddingBagCollection (see the module docstring)."""

    def __init__(
        self,
        features: FeatureConfig,
        cfg: TwoTowerConfig,
        ebc: nn.Module,
        feature_names: Sequence[str],
        kjt_cls: Any,
    ) -> None:
        nn.Module.__init__(self)
        if cfg.history_encoder != "mean":
            raise ValueError("the TorchRec two-tower pools histories itself: history_encoder must be 'mean'")
        self.cfg, self.features = cfg, features
        self.ebc = ebc
        self.sharded = False
        self.feature_names = list(feature_names)
        self.kjt_cls = kjt_cls
        self.item_tower = TorchRecItemTower(features, cfg, self)
        self.user_mlp = mlp((2 + len(DEMOGRAPHICS)) * cfg.embed_dim, cfg.hidden, cfg.dim)

    def lookup(self, present: dict[str, tuple[Tensor, Tensor]], batch: int) -> dict[str, Tensor]:
        """Pooled (batch, e) embeddings of the `present` features (values, lengths); others empty."""
        empty_values = torch.zeros(0, dtype=torch.int64)
        empty_lengths = torch.zeros(batch, dtype=torch.int64)
        parts = [present.get(name, (empty_values, empty_lengths)) for name in self.feature_names]
        kjt = self.kjt_cls(
            keys=self.feature_names,
            values=torch.cat([v for v, _ in parts]),
            lengths=torch.cat([n for _, n in parts]),
        )
        pooled = self.ebc(kjt)
        if self.sharded:  # a sharded EBC answers with an awaitable of the pooled KeyedTensor
            pooled = pooled.wait() if hasattr(pooled, "wait") else pooled
        out: dict[str, Tensor] = pooled.to_dict()
        return out

    def user(self, users: UserInputs) -> Tensor:
        mask = users.hist_item > 0
        lengths = mask.sum(1)
        present = {
            "user_id": drop_ids(users.user_id, self.cfg.id_dropout, self.training),
            **{f"user_demo_{k}": users.demographics[:, k] for k in range(users.demographics.shape[1])},
        }
        bags = {k: (v, torch.ones_like(v)) for k, v in present.items()}
        for name, ids in (("hist_item", users.hist_item), ("hist_cat", users.hist_cat)):
            bags[name] = (ids[mask], lengths)
        bags["hist_pub"] = (users.hist_pub[mask], lengths)
        pooled = self.lookup(bags, len(users.user_id))
        hist_vec = pooled["hist_item"] + pooled["hist_cat"] + pooled["hist_pub"]  # mean of the sums
        x = torch.cat([*(pooled[k] for k in present), hist_vec], -1)
        return F.normalize(self.user_mlp(x), dim=-1)
