"""`feedrank bundle`: package a retrieval run and a ranker run into one immutable directory.

    BUNDLE/
      manifest.json        SHA-256 of every file, library versions, data window, metrics, configs
      manifest.sig         HMAC-SHA256 of manifest.json, when written with a signing key
      config.json          resolved run configs, CTR prior, snapshot time
      retrieval.pt         two-tower weights          ranker.pt   ranker weights
      items.parquet  users.parquet  history.parquet   the catalog and population
      events.parquet       impressions (user, item, ts, clicked, dwell, hidden), last serving_window_days
      item_content.npy     (I, d) float32 time-independent item embeddings, catalog order
      index/               the ANN index over content + freshness at the snapshot time

The bundle is written to a temporary directory, fsynced, and renamed into place, so a reader
sees a whole bundle or none. Weights are plain state dicts (loaded with weights_only=True);
arrays are .npy without pickle; tables are Parquet; nothing unpickles untrusted data.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from feedrank.artifacts.store import load_ranker, load_retrieval, read_run
from feedrank.bundle.manifest import FORMAT_VERSION, MANIFEST, file_hashes
from feedrank.bundle.signing import sign
from feedrank.config import to_dict
from feedrank.data.features import build_catalog, to_us
from feedrank.data.split import open_split
from feedrank.errors import BundleError
from feedrank.index import AnnIndex, IndexSpec
from feedrank.models.inputs import ItemInputs

US_PER_DAY = 86_400_000_000
LIBRARIES = ("feedrank", "torch", "numpy", "polars", "pyarrow", "faiss-cpu", "fastapi")


def write_bundle(
    ranker_run: Path,
    out_dir: Path,
    *,
    retrieval_run: Path | None = None,
    index_spec: IndexSpec | None = None,
    serving_window_days: float = 7.0,
    split_dir: Path | None = None,
    overwrite: bool = False,
    sign_key: bytes | None = None,
) -> Path:
    """Write a bundle of `ranker_run` (and the retrieval run it was trained over) to `out_dir`.

    The catalog, users and events come from the split the ranker was trained on, or from
    `split_dir` (e.g. the same world with a later log or a larger catalog). With `sign_key` the
    manifest is signed (manifest.sig, signing.py)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise BundleError(
            f"bundle directory already exists: {out_dir} (bundles are immutable; use a new name)"
        )
    ranker, ranker_cfg, trained_over = load_ranker(ranker_run)
    retrieval_run = Path(retrieval_run or trained_over)
    towers, retrieval_cfg = load_retrieval(retrieval_run)
    split_dir = Path(split_dir or read_run(ranker_run)["data"])
    parts = open_split(split_dir)
    last = parts["test"]
    items, users, history = last.read("items"), last.read("users"), last.read("history")
    impressions = pl.concat([ds.read("impressions") for ds in parts.values()]).select(
        "user_id", "item_id", "ts", "clicked", "dwell_s", "hidden"
    )
    end = impressions.get_column("ts").max()
    if not isinstance(end, datetime):
        raise BundleError(f"{split_dir}: no impressions to bundle")
    snapshot_us = int(to_us(pl.Series([end]))[0])
    events = impressions.filter(
        pl.col("ts").dt.epoch("us") >= snapshot_us - int(serving_window_days * US_PER_DAY)
    )
    train = parts["train"].read("impressions")
    ctr_prior = float(train.get_column("clicked").cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]

    catalog = build_catalog(items, retrieval_cfg.features)
    content = _content_embeddings(towers, catalog, retrieval_cfg.features.item_buckets)
    vectors = towers.vectors_at(
        torch.from_numpy(content), torch.from_numpy(catalog.published_us), snapshot_us
    ).numpy()

    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        torch.save(towers.state_dict(), tmp / "retrieval.pt")
        torch.save(ranker.state_dict(), tmp / "ranker.pt")
        for name, frame in (("items", items), ("users", users), ("history", history), ("events", events)):
            frame.write_parquet(tmp / f"{name}.parquet", compression="zstd")
        np.save(tmp / "item_content.npy", content, allow_pickle=False)
        index = AnnIndex.build(
            index_spec or default_spec(len(catalog)), vectors, np.arange(len(catalog), dtype=np.int64)
        )
        index.save(tmp / "index")
        config = {
            "retrieval": to_dict(retrieval_cfg),
            "ranker": to_dict(ranker_cfg),
            "ctr_prior": ctr_prior,
            "snapshot_us": snapshot_us,
            "serving_window_days": serving_window_days,
            "index": to_dict(index.spec),
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": {"retrieval": str(retrieval_run.resolve()), "ranker": str(Path(ranker_run).resolve())},
            "data": {
                "split": str(split_dir.resolve()),
                "train_window": _span(train),
                "events_until": end.isoformat(),
                "catalog_items": len(catalog),
                "users": users.height,
            },
            "metrics": _metrics(Path(ranker_run)),
            "libraries": {name: _version(name) for name in LIBRARIES},
            "files": file_hashes(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if sign_key is not None:
            sign(tmp, sign_key)
        _fsync_tree(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def default_spec(num_items: int) -> IndexSpec:
    """Exact search while it is cheap, IVF above 100k items (BENCHMARKS.md: on these unnormalised
    inner-product vectors IVF reaches recall@100 0.998 at 1M items where HNSW stalls near 0.97).
    `feedrank index tune` picks nprobe for a target recall; 16 lists of 4·√N is a safe start."""
    if num_items < 100_000:
        return IndexSpec(kind="flat")
    return IndexSpec(kind="ivf", nlist=min(8192, int(4 * num_items**0.5)), nprobe=16)


@torch.no_grad()
def _content_embeddings(towers: Any, catalog: Any, item_buckets: int) -> np.ndarray:
    """(I, d) float32 content embeddings of every catalog item (no freshness: that is per snapshot)."""
    out = []
    for lo in range(0, len(catalog), 8192):
        sl = slice(lo, lo + 8192)
        ids = torch.from_numpy(catalog.id_bucket[sl])
        items = ItemInputs(
            item_id=ids,
            publisher=torch.from_numpy(catalog.publisher[sl]),
            category=torch.from_numpy(catalog.category[sl]),
            subcategory=torch.from_numpy(catalog.subcategory[sl]),
            content_type=torch.from_numpy(catalog.content_type[sl]),
            freshness=torch.zeros_like(ids),
        )
        out.append(towers.eval().item_tower.content(items))
    dim = towers.cfg.dim
    result: np.ndarray = torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, dim), np.float32)
    return result


def _span(frame: pl.DataFrame) -> list[str | None]:
    lo, hi = frame.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
    return [None if lo is None else lo.isoformat(), None if hi is None else hi.isoformat()]


def _metrics(ranker_run: Path) -> dict[str, Any]:
    """Headline offline metrics of the ranker run, when it has been evaluated."""
    report = ranker_run / "eval" / "report.json"
    if not report.is_file():
        return {}
    data = json.loads(report.read_text(encoding="utf-8"))
    keep = ("recall@100", "utility@100", "auc", "gauc", "ndcg@10", "slate_value_share")
    return {
        view: {system: {k: v for k, v in m.items() if k in keep} for system, m in data.get(view, {}).items()}
        for view in ("retrieval", "impressions")
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
