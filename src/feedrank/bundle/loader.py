"""Loading a bundle: check who vouches for it, verify every file's hash, then rebuild models and features.

Every failure, whatever library raised it (a pickle payload refused by torch, a Parquet file of
garbage, a truncated index), ends as one BundleError naming the bundle: callers keep what they had.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig, ranker_config
from feedrank.artifacts.store import build_ranker, build_two_tower
from feedrank.bundle.manifest import verify
from feedrank.bundle.signing import Trust, check
from feedrank.config import from_dict
from feedrank.data.examples import FeatureSpace, build_feature_space
from feedrank.errors import BundleError
from feedrank.index import AnnIndex
from feedrank.models.ranker import Ranker
from feedrank.models.two_tower import TwoTower


@dataclass
class Bundle:
    """Everything serving needs, loaded from one verified bundle directory."""

    path: Path
    manifest: dict[str, Any]
    retrieval_cfg: RetrievalRunConfig
    ranker_cfg: RankerRunConfig
    towers: TwoTower
    ranker: Ranker
    space: FeatureSpace
    item_content: np.ndarray  # (I, d) float32, catalog order
    index: AnnIndex
    snapshot_us: int  # the time the index vectors' freshness was computed for

    @property
    def version(self) -> str:
        """A short id of this bundle: the hash of its manifest's file list."""
        digest = json.dumps(self.manifest["files"], sort_keys=True).encode()
        import hashlib

        return hashlib.sha256(digest).hexdigest()[:12]


def load_bundle(path: Path | str, trust: Trust | None = None) -> Bundle:
    """Verify and load a bundle; BundleError (never a half-loaded bundle) when anything is off.

    `trust`: what must vouch for the manifest (signing.py); None checks the hashes only, for
    tools that read a bundle the operator names on their own command line."""
    path = Path(path)
    try:
        return _load(path, trust)
    except BundleError:
        raise
    except Exception as exc:  # any library's error: the bundle is unusable, say so in one line
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise BundleError(
            f"bundle {path} cannot be loaded: {type(exc).__name__}: {first_line}"[:500]
        ) from exc


def _load(path: Path, trust: Trust | None) -> Bundle:
    if trust is not None:
        check(path, trust)
    manifest = verify(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    retrieval_cfg = from_dict(RetrievalRunConfig, config["retrieval"], source=f"{path}/config.json")
    ranker_cfg = ranker_config(config["ranker"], source=f"{path}/config.json")  # fills in absent keys
    towers = build_two_tower(retrieval_cfg)
    towers.load_state_dict(torch.load(path / "retrieval.pt", map_location="cpu", weights_only=True))
    ranker = build_ranker(ranker_cfg, retrieval_cfg.features, retrieval_cfg.model.dim)
    ranker.load_state_dict(torch.load(path / "ranker.pt", map_location="cpu", weights_only=True))
    events = pl.read_parquet(path / "events.parquet")
    space = build_feature_space(
        retrieval_cfg.features,
        items=pl.read_parquet(path / "items.parquet"),
        users=pl.read_parquet(path / "users.parquet"),
        history=pl.read_parquet(path / "history.parquet"),
        impressions=events,
        ctr_prior=float(config["ctr_prior"]),
    )
    content = np.load(path / "item_content.npy", allow_pickle=False)
    index = AnnIndex.load(path / "index")
    if content.shape[0] != len(space.catalog):
        raise BundleError(f"bundle {path}: {content.shape[0]} item embeddings for {len(space.catalog)} items")
    return Bundle(
        path=path,
        manifest=manifest,
        retrieval_cfg=retrieval_cfg,
        ranker_cfg=ranker_cfg,
        towers=towers.eval(),
        ranker=ranker.eval(),
        space=space,
        item_content=content,
        index=index,
        snapshot_us=int(config["snapshot_us"]),
    )
