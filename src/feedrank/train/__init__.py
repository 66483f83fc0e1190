"""Training: one loop for every model (Task = network + loss), single process or torchrun DDP.

    from feedrank.train import TensorBatchSource, TrainConfig, train

    result = train(task, TensorBatchSource(tensors, batch_size=512, seed=0), TrainConfig(epochs=3),
                   Path("runs/ranker"), evaluate=lambda model: {"auc": auc_of(model)})

Modules: task (Task and BatchSource protocols, parameter split), batches (TensorBatchSource and
what a batch must support), batch_types (RetrievalBatch, RankerBatch), config (TrainConfig), loop
(train), optim, precision, distributed, checkpoint, early_stopping, curves, report (errors live in
feedrank.errors).
"""

from feedrank.artifacts.train_config import TrainConfig
from feedrank.errors import CheckpointError, DivergedError, TrainError
from feedrank.train.batches import TensorBatchSource, count_examples, move_to
from feedrank.train.checkpoint import latest_checkpoint, load_checkpoint
from feedrank.train.distributed import spawn_local
from feedrank.train.loop import Evaluate, StepInfo, train
from feedrank.train.report import TrainResult
from feedrank.train.task import BatchSource, HasSparseParameters, Task, TaskModule, split_parameters

__all__ = [
    "BatchSource",
    "CheckpointError",
    "DivergedError",
    "Evaluate",
    "HasSparseParameters",
    "StepInfo",
    "Task",
    "TaskModule",
    "TensorBatchSource",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "count_examples",
    "latest_checkpoint",
    "load_checkpoint",
    "move_to",
    "spawn_local",
    "split_parameters",
    "train",
]
