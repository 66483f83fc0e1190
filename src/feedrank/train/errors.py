"""Errors of the training loop, under the one FeedrankError tree.

    FeedrankError
    └── TrainError            training cannot go on
        ├── CheckpointError   a checkpoint cannot be read or does not fit the run resuming from it
        └── DivergedError     the loss became NaN or infinite

(Candidates to move into feedrank/errors.py, which this package may not edit.)
"""

from __future__ import annotations

from feedrank.errors import FeedrankError


class TrainError(FeedrankError):
    """Training cannot go on."""


class CheckpointError(TrainError):
    """A checkpoint cannot be read, or does not fit the run that tries to resume from it."""


class DivergedError(TrainError):
    """The training loss became NaN or infinite."""
