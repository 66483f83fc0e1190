"""Fixtures of the training tests: small seeded toy data and a fast TrainConfig."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from torch import Tensor

from feedrank.train import TrainConfig
from tests.train.toy import make_data

# dist_timeout_s: a rank left waiting by a bug fails the test within a minute instead of hanging.
FAST = TrainConfig(
    progress=False, plot=False, log_every=1, clip_grad_norm=0.0, lr=1e-2, sparse_lr=0.1, dist_timeout_s=60.0
)


def fast_config(**changes: Any) -> TrainConfig:
    """A TrainConfig for tests: no bar, no plot, a record every step; `changes` on top."""
    return dataclasses.replace(FAST, **changes)


@pytest.fixture(scope="session")
def toy_train() -> dict[str, Tensor]:
    return make_data(384, seed=0)


@pytest.fixture(scope="session")
def toy_valid() -> dict[str, Tensor]:
    return make_data(256, seed=1)
