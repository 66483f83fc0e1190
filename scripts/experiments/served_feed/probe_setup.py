"""The setup every session-7 probe (probe10-13) shares: the bundle's Recommender without index
refreshes, the default world's ground truth, and sampled validation requests."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from diagnose import sample_requests

from feedrank.bundle import load_bundle
from feedrank.data.features import to_us
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.serve.settings import ServeSettings
from feedrank.sim import World


def probe_setup(bundle_dir: str, requests: int, demo: str = "runs/demo") -> tuple[Any, ...]:
    """(bundle, world, recommender, catalog, request times in us, user ids) for `requests` valid requests."""
    bundle = load_bundle(bundle_dir)
    world = World.load(f"{demo}/sim")
    settings = dataclasses.replace(ServeSettings(), index_max_age_s=1e12)  # never refresh mid-probe
    rec = Recommender(bundle, settings, build_reranker(settings.rerank))
    reqs = sample_requests(Path(f"{demo}/split"), "valid", requests, 0)
    ts: np.ndarray = to_us(reqs.get_column("ts"))
    return bundle, world, rec, rec.catalog, ts, reqs.get_column("user_id").to_list()
