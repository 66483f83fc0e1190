"""Training throughput (samples/s) and peak memory (RSS) of the two-tower and the ranker on this CPU.

    .venv/bin/python bench/bench_training.py --repeats 3 --ablation --torchrec-python /tmp/trec/bin/python
    .venv/bin/python bench/bench_training.py --quick                  # smoke: a few steps, 1 repeat
    .venv/bin/python bench/bench_training.py --profile two_tower      # where a step's time goes

Default configuration of both runs (`RetrievalRunConfig`, `RankerRunConfig`): batch 1024, d = 128,
50-item histories, the two-tower with the 9 hard negatives of a 10-item slate, the ranker over
the frozen towers' precomputed tables. Batches are synthetic (bench/common.py) with the keys,
dtypes and shapes of train_retrieval's / train_ranker's examples (checked against the real ones
on the tiny simulated world before measuring): ids uniform over the FeatureConfig tables, every
history 50 items long; the "catalog ids" cases draw items from a 5,300-item catalog with
popularity instead, which repeats items within a batch about as much as the default world does.

Threads: 1 and 2 torch intra-op threads, the latter also with OMP_WAIT_POLICY=PASSIVE (with
OpenMP's default spin-waiting, two threads on a 2-core box that other processes also use lose a
scheduler slice at every parallel region; sleeping waiters do not).

Each case runs in a fresh Python process (so its peak RSS is its own) through the real
`feedrank.train.train` loop with the real RetrievalTask / RankerTask and no evaluation. Samples/s
counts the steps after `--warmup` steps, timed by `on_step`; the final checkpoint write is outside
the window. Each ratio (bf16 / fp32, 2 / 1 threads, variant / baseline) comes from its two cases
run back to back (in alternating order) in every repeat, and the median over repeats is reported:
the machine is shared, so absolute rates move with its load and paired ratios move less.

Variants of the two-tower (the ranker has none):
    two_tower                 the model as it is
    two_tower_torchrec        embedding tables on torchrec's EmbeddingBagCollection (sparse grads,
                              the loop's Adagrad); history pooled by the EBC over jagged bags
    two_tower_torchrec_sharded  the same tables sharded table-wise by TorchRec's planner over a
                              1-rank gloo group (DistributedModelParallel; Adagrad fused into backward)
    two_tower_torchrec_fused  FusedEmbeddingBagCollection: FBGEMM's CPU TBE, Adagrad fused into backward
    two_tower+FLAG+...        prototypes of the speed-ups proposed in BENCHMARKS.md:
        fresh          freshness buckets of the (B, B) in-batch pairs by int64 bucketize of µs ages
        bag            history pooled with F.embedding_bag (weighted sum) on the same tables
        dense_small    tables of <= 4,096 rows get dense gradients (AdamW) instead of sparse Adagrad
        fused_adagrad  Adagrad of the large sparse tables applied in backward (post-accumulate hook)
        compile_pairs  score_at's (B, B) logits + freshness term as one torch.compile'd function, the
                       buckets counted by unrolled comparisons (fused into one loop by inductor)
        dedupe         the item tower embeds each distinct item id of a call once, then gathers
                       (pays off with --ids catalog, where batches repeat items as real ones do)

torchrec is optional: it is used only from an interpreter where it imports (this one, or the one
given by --torchrec-python with feedrank's dependencies; feedrank itself comes from src/ via
PYTHONPATH); otherwise its variants are skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import (
    REPO,
    SyntheticRequests,
    build_world,
    current_rss_mib,
    describe_examples,
    machine,
    median,
    run_child,
    spread,
    synthetic_ranker_examples,
    synthetic_retrieval_examples,
    timed_train,
)
from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig
from feedrank.artifacts.store import build_ranker, build_two_tower
from feedrank.data.features import DEMOGRAPHICS, FeatureConfig
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.two_tower import ItemTower, TwoTower, TwoTowerConfig, UserTower, drop_ids
from feedrank.train import TensorBatchSource, TrainConfig, train
from feedrank.train.batch_types import RankerBatch, RetrievalBatch
from feedrank.train.batches import take
from feedrank.train.ranker_task import RankerTask, tower_tables
from feedrank.train.retrieval_task import RetrievalTask

log = logging.getLogger("bench_training")

SMALL_TABLE_ROWS = 4_096
CATALOG_ITEMS = 5_300  # the default world's catalog
FLAGS = ("fresh", "bag", "dense_small", "fused_adagrad", "compile_pairs", "dedupe")
PROPOSED = "two_tower+" + "+".join(FLAGS)
TORCHREC_VARIANTS = ("two_tower_torchrec", "two_tower_torchrec_sharded", "two_tower_torchrec_fused")


# --------------------------------------------------------------------------- prototypes (bench only)


class ProposedItemTower(ItemTower):
    """ItemTower with two of the prototypes (`fresh`, `dedupe`); the same parameters."""

    def __init__(self, features: FeatureConfig, cfg: TwoTowerConfig, flags: set[str]) -> None:
        super().__init__(features, cfg)
        self.int_freshness, self.dedupe = "fresh" in flags, "dedupe" in flags
        self.edges_us = torch.tensor([round(h * 3.6e9) for h in features.freshness_edges_h])

    def freshness_bucket(self, published_us: Tensor, ts_us: Tensor) -> Tensor:
        """Same buckets as ItemTower.freshness_bucket, from int64 µs ages: no float64 (B, B) pass."""
        if not self.int_freshness:
            return super().freshness_bucket(published_us, ts_us)
        # age < 0 (published "after" the impression) lands in bucket 1, as the clamp(min=0) does.
        bucket = 1 + torch.bucketize(ts_us - published_us, self.edges_us.to(ts_us.device), right=True)
        return torch.where(published_us == torch.iinfo(torch.int64).min, torch.zeros_like(bucket), bucket)

    def content(self, items: ItemInputs) -> Tensor:
        """Embed each distinct item of the batch once and gather: (..., d).

        A batch repeats items (positives, the other items of their slates, popular news); content
        depends on the item's features only, so the tables and the MLP run on distinct item ids.
        Id dropout then hides an item for all its rows in the batch rather than per row.
        """
        if not self.dedupe:
            return super().content(items)
        shape, flat = items.shape, items.flatten()
        _, first, inverse = _unique_first(flat.item_id)
        pick = ItemInputs(*(f[first] for f in flat.fields()))
        return super().content(pick)[inverse].reshape(*shape, -1)


def _unique_first(values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(distinct values, index of the first occurrence of each, inverse) of a 1-d tensor."""
    ids, inverse = torch.unique(values, return_inverse=True)
    first = torch.full_like(ids, values.numel()).scatter_reduce_(
        0, inverse, torch.arange(values.numel()), reduce="amin"
    )
    return ids, first, inverse


class BagUserTower(UserTower):
    """The masked history mean as three weighted F.embedding_bag sums over the shared tables.

    sum_l w_l (item[l] + cat[l] + pub[l]) with w = mask / count is the masked mean of the sums;
    embedding_bag never materialises the (B, L, e) sequence, forward or backward.
    """

    def forward(self, users: UserInputs) -> Tensor:
        if self.cfg.history_encoder != "mean":
            return super().forward(users)
        items = self.items[0]
        mask = (users.hist_item > 0).float()  # (B, L)
        weights = mask / mask.sum(1, keepdim=True).clamp(min=1.0)
        pooled = [
            F.embedding_bag(ids, table.weight, mode="sum", per_sample_weights=weights, sparse=table.sparse)
            for ids, table in (
                (users.hist_item, items.item_id),
                (users.hist_cat, items.category),
                (users.hist_pub, items.publisher),
            )
        ]
        hist_vec = pooled[0] + pooled[1] + pooled[2]  # (B, e)
        demo = [emb(users.demographics[:, k]) for k, emb in enumerate(self.demographics)]
        user_id = self.user_id(drop_ids(users.user_id, self.cfg.id_dropout, self.training))
        return F.normalize(self.mlp(torch.cat([user_id, *demo, hist_vec], -1)), dim=-1)


def pair_logits(
    user_emb: Tensor,
    content: Tensor,
    fresh_weight: Tensor,
    published_us: Tensor,
    ts_us: Tensor,
    temperature: float,
    edges_us: tuple[int, ...],
) -> Tensor:
    """TwoTower.score_at in a form inductor fuses: bucket = 1 + #{edges <= age}, 0 when unknown."""
    age = ts_us[:, None] - published_us[None, :]  # (B, N) int64 µs
    bucket = torch.ones_like(age)
    for edge in edges_us:  # unrolled at trace time: one fused pass instead of a binary search per pair
        bucket = bucket + (age >= edge).long()
    bucket = torch.where((published_us != torch.iinfo(torch.int64).min)[None, :], bucket, 0)
    fresh = user_emb @ fresh_weight.T  # (B, num_buckets)
    return (user_emb @ content.T + torch.gather(fresh, 1, bucket)) / temperature


class ProposedTwoTower(TwoTower):
    """TwoTower with the prototyped speed-ups; the same parameters and state_dict keys."""

    def __init__(
        self, features: FeatureConfig, cfg: TwoTowerConfig, num_demographics: int, flags: Iterable[str]
    ) -> None:
        nn.Module.__init__(self)
        flags = set(flags)
        self.cfg = cfg
        user_cls = BagUserTower if "bag" in flags else UserTower
        self.item_tower = ProposedItemTower(features, cfg, flags)
        self.user_tower = user_cls(features, cfg, self.item_tower, num_demographics)
        if "dense_small" in flags:
            for m in self.modules():
                if isinstance(m, nn.Embedding) and m.num_embeddings <= SMALL_TABLE_ROWS:
                    m.sparse = False
        self.edges_us = tuple(round(h * 3.6e9) for h in features.freshness_edges_h)
        self.pair_logits = torch.compile(pair_logits, dynamic=False) if "compile_pairs" in flags else None

    def score_at(self, user_emb: Tensor, content: Tensor, published_us: Tensor, ts_us: Tensor) -> Tensor:
        if self.pair_logits is None:
            return super().score_at(user_emb, content, published_us, ts_us)
        weight = self.item_tower.freshness.weight
        out: Tensor = self.pair_logits(
            user_emb, content, weight, published_us, ts_us, self.cfg.temperature, self.edges_us
        )
        return out


class InBackwardAdagrad:
    """Adagrad (torch's sparse update, element-wise) applied to each sparse table in backward.

    The update runs as soon as a table's gradient is complete and then drops the gradient, so the
    loop's own sparse optimizer finds nothing to do. One unique + index_add replaces torch's
    coalesce / sparse_mask / sparse add_ chain. Constant lr: a real version belongs in
    train/optim.py, where the schedule is known.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, eps: float = 1e-10) -> None:
        self.lr, self.eps = lr, eps
        self.state: dict[int, Tensor] = {}
        for p in params:
            self.state[id(p)] = torch.zeros_like(p)
            p.register_post_accumulate_grad_hook(self._step)

    @torch.no_grad()
    def _step(self, p: Tensor) -> None:
        grad = p.grad
        p.grad = None
        if grad is None:
            return
        if not grad.is_sparse:
            raise TypeError("InBackwardAdagrad expects sparse gradients")
        rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
        g = torch.zeros(rows.numel(), p.shape[1], dtype=p.dtype).index_add_(0, inverse, grad._values())
        state = self.state[id(p)]
        state.index_add_(0, rows, g * g)
        p.index_add_(0, rows, g / state[rows].sqrt_().add_(self.eps), alpha=-self.lr)


# --------------------------------------------------------------------------- torchrec (optional)


def torchrec_two_tower(
    features: FeatureConfig, cfg: TwoTowerConfig, variant: str, sparse_lr: float
) -> TwoTower:
    """The two-tower on TorchRec (feedrank.models.torchrec_towers): its EBC with sparse gradients,
    the same tables sharded table-wise by the planner over a 1-rank gloo group (fused Adagrad), or
    FBGEMM's FusedEmbeddingBagCollection (CPU table-batched kernels, Adagrad fused into backward).
    """
    import torchrec
    from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection

    from feedrank.models import torchrec_towers as trec

    if variant == "two_tower_torchrec":
        return trec.torchrec_two_tower(features, cfg)
    if variant == "two_tower_torchrec_sharded":
        import os

        import torch.distributed as dist

        if not dist.is_initialized():
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(29_500 + os.getpid() % 1_000))
            dist.init_process_group("gloo", rank=0, world_size=1)
        model = trec.torchrec_two_tower(features, cfg, device="meta")
        log.info("torchrec plan:\n%s", trec.shard_tables(model, sparse_lr))
        return model
    specs = trec.table_specs(features)
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
    ebc = FusedEmbeddingBagCollection(
        tables, optimizer_type=torch.optim.Adagrad, optimizer_kwargs={"lr": sparse_lr, "eps": 1e-10}
    )
    names = [n for _, feature_names in specs.values() for n in feature_names]
    return trec.TorchRecTwoTower(features, cfg, ebc, names, torchrec.KeyedJaggedTensor)


def torchrec_status(python: str) -> str:
    """'' if torchrec imports in `python` (with feedrank from src/), else why it does not."""
    code = "import torchrec, fbgemm_gpu, feedrank.train; print(torchrec.__version__)"
    env = {"PYTHONPATH": str(REPO / "src")}
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        return f"{python}: {exc}"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"torchrec does not import in {python}: {lines[-1] if lines else done.returncode}"
    return ""


# --------------------------------------------------------------------------- one measurement (child)


def build_case(
    variant: str, n: int, batch: int, seed: int, catalog_items: int = 0
) -> tuple[Any, TensorBatchSource[Any], TrainConfig]:
    """(task, data, train config) of a variant, built like train_retrieval / train_ranker do."""
    torch.manual_seed(seed)
    retrieval = RetrievalRunConfig()
    if variant == "ranker":
        # As train_ranker: the frozen towers run once, before training, over every request and
        # catalog item; batches then index those tables.
        ranker_cfg = RankerRunConfig()
        towers = build_two_tower(retrieval).eval()  # untrained weights cost the same
        rows, requests, catalog = synthetic_ranker_examples(n, retrieval.features, seed)
        user_batches = [
            take(requests.user, torch.arange(lo, min(lo + 8192, len(requests))))
            for lo in range(0, len(requests), 8192)
        ]
        tables = tower_tables(towers, user_batches, catalog)
        ranker = build_ranker(ranker_cfg, retrieval.features, retrieval.model.dim)
        task: Any = RankerTask(ranker, tables, ranker_cfg.loss)
        return task, TensorBatchSource(rows, batch, seed=seed), ranker_cfg.train
    train_cfg = retrieval.train
    if variant == "two_tower":
        model = build_two_tower(retrieval)
    elif variant in TORCHREC_VARIANTS:
        model = torchrec_two_tower(retrieval.features, retrieval.model, variant, train_cfg.sparse_lr)
    elif variant.startswith("two_tower+"):
        flags = variant.split("+")[1:]
        unknown = set(flags) - set(FLAGS)
        if unknown:
            raise SystemExit(f"unknown two_tower flags {sorted(unknown)}; known: {', '.join(FLAGS)}")
        model = ProposedTwoTower(retrieval.features, retrieval.model, len(DEMOGRAPHICS), flags)
        if "fused_adagrad" in flags:
            big = [m.weight for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse]
            InBackwardAdagrad(big, lr=train_cfg.sparse_lr)
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    # A 10-item slate has 9 other items: what `hard_negatives` > 0 yields on the default world.
    hard = min(9, retrieval.loss.hard_negatives)
    data = synthetic_retrieval_examples(
        n, retrieval.features, seed, hard_negatives=hard, catalog_items=catalog_items
    )
    return RetrievalTask(model, retrieval.loss), TensorBatchSource(data, batch, seed=seed), train_cfg


def measure(
    variant: str,
    amp: str,
    threads: int,
    batch: int,
    warmup: int,
    steps: int,
    max_seconds: float,
    seed: int,
    catalog_items: int = 0,
) -> dict[str, Any]:
    """Train `variant` for warmup + steps optimizer steps in this process; rates after warm-up."""
    torch.set_num_threads(threads)
    task, data, base = build_case(variant, batch * (warmup + steps), batch, seed, catalog_items)
    config = dataclasses.replace(
        base,
        epochs=1,
        max_steps=warmup + steps,
        early_stop_metric="",
        amp=amp,  # type: ignore[arg-type]
        num_threads=threads,
        seed=seed,
        log_every=10**9,
    )
    rss_ready = current_rss_mib()
    result = timed_train(task, data, config, warmup, max_seconds)
    return {"variant": variant, "amp": amp, "threads": threads, **result, "rss_ready_mib": rss_ready}


# --------------------------------------------------------------------------- driver (parent)


@dataclass(frozen=True)
class Case:
    variant: str
    amp: str
    threads: int
    passive: bool = False  # OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning
    catalog: bool = False  # ids from a 5,300-item catalog with popularity (else uniform over tables)

    @property
    def key(self) -> str:
        suffix = ("/passive" if self.passive else "") + ("/catalog-ids" if self.catalog else "")
        return f"{self.variant}/{self.amp}/{self.threads}t{suffix}"

    def env(self, trec_python: str | None) -> dict[str, str]:
        env = {"OMP_WAIT_POLICY": "PASSIVE"} if self.passive else {}
        return env | ({"PYTHONPATH": str(REPO / "src")} if trec_python else {})


def comparisons(ablation: bool) -> list[tuple[str, Case, Case]]:
    """(label, numerator, denominator): each pair runs back to back in every repeat."""
    pairs: list[tuple[str, Case, Case]] = []
    for model in ("two_tower", "ranker"):
        pairs += [
            (f"{model}: bf16 / fp32 (1 thread)", Case(model, "bf16", 1), Case(model, "off", 1)),
            (f"{model}: 2 / 1 threads (fp32)", Case(model, "off", 2), Case(model, "off", 1)),
            (f"{model}: 2 / 1 threads (bf16)", Case(model, "bf16", 2), Case(model, "bf16", 1)),
            (
                f"{model}: 2 / 1 threads (fp32, OMP_WAIT_POLICY=PASSIVE)",
                Case(model, "off", 2, passive=True),
                Case(model, "off", 1, passive=True),
            ),
        ]
    base = Case("two_tower", "off", 1)
    pairs += [(f"{v} / two_tower (fp32)", Case(v, "off", 1), base) for v in TORCHREC_VARIANTS]
    pairs += [
        (f"{PROPOSED} / two_tower (fp32)", Case(PROPOSED, "off", 1), base),
        (f"{PROPOSED} (bf16) / two_tower (fp32)", Case(PROPOSED, "bf16", 1), base),
    ]
    if ablation:
        pairs += [
            (f"two_tower+{f} / two_tower (fp32)", Case(f"two_tower+{f}", "off", 1), base) for f in FLAGS
        ]
    real = Case("two_tower", "off", 1, catalog=True)
    pairs += [
        ("two_tower: catalog ids / uniform ids (fp32)", real, base),
        (
            "two_tower+dedupe / two_tower (fp32, catalog ids)",
            Case("two_tower+dedupe", "off", 1, catalog=True),
            real,
        ),
        (f"{PROPOSED} (bf16) / two_tower (fp32), catalog ids", Case(PROPOSED, "bf16", 1, catalog=True), real),
    ]
    return pairs


def verify_synthetic_examples() -> None:
    """The synthetic examples must look like the real ones: same keys, dtypes and trailing shapes
    as train_retrieval's and train_ranker's on the tiny simulated world."""
    from feedrank.artifacts.store import build_space
    from feedrank.candidates import SOURCE_FEATURES
    from feedrank.data.examples import ranker_examples, retrieval_examples
    from feedrank.data.split import open_split
    from feedrank.train.run import AUTO_CATALOG_NEGATIVES

    cfg = RetrievalRunConfig()
    with tempfile.TemporaryDirectory(prefix="bench-train-world-") as tmp:
        split_dir = build_world(Path(tmp), "tiny")
        space = build_space(split_dir, cfg.features)
        train_part = open_split(split_dir)["train"]
        impressions = train_part.read("impressions")
        catalog_negatives = cfg.loss.catalog_negatives
        if catalog_negatives < 0:
            catalog_negatives = AUTO_CATALOG_NEGATIVES if train_part.click_only else 0
        real_retrieval = retrieval_examples(
            space, impressions, hard_negatives=cfg.loss.hard_negatives, catalog_negatives=catalog_negatives
        )
        # the weight is added by train_retrieval
        weights = np.ones(len(real_retrieval), dtype=np.float32)
        real_batch = RetrievalBatch.from_arrays(dataclasses.replace(real_retrieval, weight=weights))
        real_rows, real_requests = ranker_examples(space, impressions)
        # added by train_ranker (SourceReplay.columns: LoggedSources.features, float32 (N, 8))
        real_rows["sources"] = np.zeros((real_rows["item_row"].size, len(SOURCE_FEATURES)), dtype=np.float32)
        everything = np.arange(len(space.catalog))
        real_catalog = space.item_arrays(everything, np.zeros(everything.size, dtype=np.int64))
    width = 0 if real_batch.shown is None else int(real_batch.shown.item_id.shape[1])
    rows, requests, catalog = synthetic_ranker_examples(40, cfg.features)
    for name, real, synthetic in (
        ("retrieval", real_batch, synthetic_retrieval_examples(4, cfg.features, hard_negatives=width)),
        ("ranker rows", RankerBatch.from_arrays(real_rows), rows),
        ("ranker requests", SyntheticRequests.from_arrays(real_requests), requests),
        ("ranker catalog", ItemInputs.from_arrays(real_catalog), catalog),
    ):
        want, got = describe_examples(real), describe_examples(synthetic)
        if want != got:
            raise SystemExit(f"synthetic {name} examples differ from the real ones:\n{want}\n{got}")
    log.info("synthetic examples match train_retrieval's and train_ranker's (keys, dtypes, shapes)")


def child_args(case: Case, args: argparse.Namespace) -> list[str]:
    return [
        "--variant", case.variant, "--amp-one", case.amp, "--threads-one", str(case.threads),
        "--batch", str(args.batch), "--warmup", str(args.warmup), "--steps", str(args.steps),
        "--max-seconds", str(args.max_seconds), "--seed", str(args.seed),
        "--catalog-items", str(CATALOG_ITEMS if case.catalog else 0),
    ]  # fmt: skip


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    pairs = comparisons(args.ablation)
    if args.variants:
        wanted = set(args.variants.split(","))
        pairs = [p for p in pairs if p[1].variant in wanted or p[2].variant in wanted]
        known = {c.variant for _, num, den in pairs for c in (num, den)}
        base = Case("two_tower", "off", 1)
        pairs += [(f"{v} / two_tower (fp32)", Case(v, "off", 1), base) for v in wanted - known]
    trec_python = args.torchrec_python or sys.executable
    skipped: dict[str, str] = {}
    if any(c.variant in TORCHREC_VARIANTS for _, num, den in pairs for c in (num, den)):
        reason = torchrec_status(trec_python)
        if reason:
            skipped = dict.fromkeys(TORCHREC_VARIANTS, reason)
            pairs = [p for p in pairs if p[1].variant not in TORCHREC_VARIANTS]
            log.warning("skipping the torchrec variants: %s", reason)
    runs: dict[str, list[dict[str, Any]]] = {}
    ratios: dict[str, list[float]] = {label: [] for label, _, _ in pairs}
    for repeat in range(args.repeats):
        for label, num, den in pairs:
            pair: dict[str, dict[str, Any]] = {}
            for case in (den, num) if repeat % 2 == 0 else (num, den):  # alternate who goes first
                python = trec_python if case.variant in TORCHREC_VARIANTS else None
                cmd = child_args(case, args)
                result = run_child(Path(__file__), cmd, python=python, env=case.env(python))
                pair[case.key] = result
                runs.setdefault(case.key, []).append(result)
            ratios[label].append(pair[num.key]["samples_per_s"] / pair[den.key]["samples_per_s"])
            rate_num, rate_den = pair[num.key]["samples_per_s"], pair[den.key]["samples_per_s"]
            log.warning(
                "repeat %d  %-66s %5.2fx  (%6.0f vs %6.0f samples/s)",
                repeat + 1, label, ratios[label][-1], rate_num, rate_den,
            )  # fmt: skip
    summary: dict[str, Any] = {}
    for key, rs in runs.items():
        rates = [r["samples_per_s"] for r in rs]
        summary[key] = {
            "samples_per_s": median(rates),
            "samples_per_s_range": spread(rates),
            "runs": len(rs),
            "step_ms_median": median([r["step_ms_median"] for r in rs]),
            "step_ms_p90": median([r["step_ms_p90"] for r in rs]),
            "peak_rss_mib": median([r["peak_rss_mib"] for r in rs]),
            "rss_ready_mib": median([r["rss_ready_mib"] for r in rs]),
        }
    ratio_summary = {
        label: {"median": median(v), "range": spread(v), "per_repeat": v} for label, v in ratios.items()
    }
    return {"cases": summary, "ratios": ratio_summary, "skipped": skipped, "runs": runs}


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    out = sys.stdout
    out.write(
        f"\nbatch {args.batch}, {args.warmup} warm-up + up to {args.steps} measured steps "
        f"(<= {args.max_seconds:g} s), {args.repeats} repeat(s), each case in a fresh process\n\n"
    )
    width = max(len(k) for k in report["cases"]) + 1
    out.write(
        f"{'case':<{width}} {'samples/s':>10} {'range':>17} {'step ms':>8} {'p90 ms':>8} {'peak RSS':>9}\n"
    )
    for key, c in report["cases"].items():
        lo, hi = c["samples_per_s_range"]
        out.write(
            f"{key:<{width}} {c['samples_per_s']:>10,.0f} {f'{lo:,.0f}-{hi:,.0f}':>17}"
            f" {c['step_ms_median']:>8.1f} {c['step_ms_p90']:>8.1f} {c['peak_rss_mib']:>5.0f} MiB\n"
        )
    width = max([len(k) for k in report["ratios"]] + [40]) + 1
    out.write(f"\n{'ratio (same repeat, median over repeats)':<{width}} {'median':>7} {'range':>13}\n")
    for label, r in report["ratios"].items():
        lo, hi = r["range"]
        out.write(f"{label:<{width}} {r['median']:>6.2f}x {f'{lo:.2f}-{hi:.2f}':>13}\n")
    for variant, reason in report["skipped"].items():
        out.write(f"skipped {variant}: {reason}\n")


def profile(variant: str, amp: str, batch: int, steps: int, rows: int, catalog_items: int) -> None:
    """torch.profiler over `steps` steps of `variant` (1 thread) after 3 warm-up steps."""
    from torch.profiler import ProfilerActivity, schedule

    torch.set_num_threads(1)
    task, data, base = build_case(variant, batch * (steps + 4), batch, 0, catalog_items)
    config = dataclasses.replace(
        base, epochs=1, max_steps=steps + 3, early_stop_metric="", amp=amp, num_threads=1,  # type: ignore[arg-type]
        progress=False, plot=False, log_every=10**9,
    )  # fmt: skip
    prof = torch.profiler.profile(
        activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=3, active=steps, repeat=1)
    )
    with prof, tempfile.TemporaryDirectory(prefix="bench-train-prof-") as tmp:
        train(task, data, config, Path(tmp), on_step=lambda info: prof.step())
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    sys.stdout.write(f"{variant} ({amp}), {steps} steps of batch {batch}, 1 thread\n{table}\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per case (median)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 repeat, 2 + 4 steps")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing starts")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (at most)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="stop timing a run after this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="", help="comma list of variants to run (default: all)")
    parser.add_argument("--ablation", action="store_true", help=f"also each of {', '.join(FLAGS)} alone")
    parser.add_argument("--torchrec-python", default="", help="interpreter with torchrec (default: this one)")
    parser.add_argument("--profile", default="", metavar="VARIANT", help="profile VARIANT instead")
    parser.add_argument("--amp", default="off", help="with --profile: off or bf16")
    parser.add_argument("--ids", choices=("uniform", "catalog"), default="uniform", help="with --profile")
    parser.add_argument("--json-out", type=Path, help="also write the full results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--amp-one", help=argparse.SUPPRESS)
    parser.add_argument("--threads-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--catalog-items", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("feedrank").setLevel(logging.ERROR)
    if args.child:
        result = measure(
            args.variant, args.amp_one, args.threads_one, args.batch, args.warmup, args.steps,
            args.max_seconds, args.seed, args.catalog_items,
        )  # fmt: skip
        print(json.dumps(result))
        return
    if args.profile:
        catalog_items = CATALOG_ITEMS if args.ids == "catalog" else 0
        profile(args.profile, args.amp, args.batch, 4 if args.quick else 10, 30, catalog_items)
        return
    if args.quick:
        args.repeats, args.warmup, args.steps, args.max_seconds = 1, 2, 4, 10.0
    verify_synthetic_examples()
    report = run_all(args)
    print_report(report, args)
    full = {
        "benchmark": "training",
        "args": {k: str(v) for k, v in vars(args).items()},
        **machine(),
        **report,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in full.items() if k != "runs"}))


if __name__ == "__main__":
    main()
