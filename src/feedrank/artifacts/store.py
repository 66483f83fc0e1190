"""A training run on disk, read back and written: run.json and model.pt.

    RUN/
      run.json         kind, resolved config, data split, training result
      model.pt         the network's weights

Models are rebuilt from the config saved in run.json and their weights loaded with
`torch.load(weights_only=True)`, so reading a run never unpickles code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig, ranker_config
from feedrank.config import from_dict, to_dict
from feedrank.data.examples import FeatureSpace, fit_feature_space
from feedrank.data.features import DEMOGRAPHICS, FeatureConfig
from feedrank.data.split import open_split
from feedrank.errors import DatasetError
from feedrank.models.ranker import Ranker
from feedrank.models.two_tower import TwoTower

RUN_FILE = "run.json"
WEIGHTS_FILE = "model.pt"


def build_space(split_dir: Path, features: FeatureConfig) -> FeatureSpace:
    """The feature space a run over `split_dir` sees (fitted on the split's train part)."""
    return fit_feature_space(open_split(split_dir), features)


def build_two_tower(cfg: RetrievalRunConfig) -> TwoTower:
    return TwoTower(cfg.features, cfg.model, num_demographics=len(DEMOGRAPHICS))


def build_ranker(cfg: RankerRunConfig, features: FeatureConfig, tower_dim: int) -> Ranker:
    return Ranker(
        features,
        cfg.model,
        tower_dim=tower_dim,
        num_counters=len(cfg.counters),
        counter_names=cfg.counters,
        num_sources=len(cfg.sources),
    )


def write_run(
    out_dir: Path,
    kind: str,
    cfg: Any,
    split_dir: Path,
    model: nn.Module,
    result: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> None:
    """Write `model`'s weights and run.json (kind, config, data, `result` and `extra`) to `out_dir`."""
    torch.save(model.state_dict(), out_dir / WEIGHTS_FILE)
    summary = {
        "kind": kind,
        "config": to_dict(cfg),
        "data": str(Path(split_dir).resolve()),
        "result": {k: str(v) if isinstance(v, Path) else v for k, v in result.items()},
        **extra,
    }
    (out_dir / RUN_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise DatasetError(f"{run_dir} is not a training run: {RUN_FILE} is missing")
    info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return info


def load_retrieval(run_dir: Path) -> tuple[TwoTower, RetrievalRunConfig]:
    info = read_run(run_dir)
    if info["kind"] != "retrieval":
        raise DatasetError(f"{run_dir} is a {info['kind']} run, not a retrieval run")
    cfg = from_dict(RetrievalRunConfig, info["config"], source=str(Path(run_dir) / RUN_FILE))
    model = build_two_tower(cfg)
    model.load_state_dict(torch.load(Path(run_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval(), cfg


def load_ranker(run_dir: Path) -> tuple[Ranker, RankerRunConfig, Path]:
    """The ranker, its config, and the retrieval run it was trained over."""
    info = read_run(run_dir)
    if info["kind"] != "ranker":
        raise DatasetError(f"{run_dir} is a {info['kind']} run, not a ranker run")
    cfg = ranker_config(info["config"], source=str(Path(run_dir) / RUN_FILE))
    retrieval_run = Path(info["retrieval_run"])
    _, retrieval_cfg = load_retrieval(retrieval_run)
    ranker = build_ranker(cfg, retrieval_cfg.features, retrieval_cfg.model.dim)
    ranker.load_state_dict(torch.load(Path(run_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return ranker.eval(), cfg, retrieval_run
