"""What a training run leaves behind and how to read it back.

Run configs (`RetrievalRunConfig`, `RankerRunConfig` and the parts they gather), the model
factories that rebuild a network from a config, and run.json / model.pt I/O. Training writes
these; bundles, evaluation and serving read them. This package imports no training loop,
torch.distributed or matplotlib, so that loading a model for serving stays light.
"""

from feedrank.artifacts.config import (
    RankerLossConfig,
    RankerRunConfig,
    RetrievalLossConfig,
    RetrievalRunConfig,
    ranker_config,
)
from feedrank.artifacts.labels import EngagementWeights
from feedrank.artifacts.store import (
    RUN_FILE,
    WEIGHTS_FILE,
    build_ranker,
    build_space,
    build_two_tower,
    load_ranker,
    load_retrieval,
    read_run,
    write_run,
)
from feedrank.artifacts.towers import item_vectors_at_hour
from feedrank.artifacts.train_config import TrainConfig

__all__ = [
    "RUN_FILE",
    "WEIGHTS_FILE",
    "EngagementWeights",
    "RankerLossConfig",
    "RankerRunConfig",
    "RetrievalLossConfig",
    "RetrievalRunConfig",
    "TrainConfig",
    "build_ranker",
    "build_space",
    "build_two_tower",
    "item_vectors_at_hour",
    "load_ranker",
    "load_retrieval",
    "ranker_config",
    "read_run",
    "write_run",
]
