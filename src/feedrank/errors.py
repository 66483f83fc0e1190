"""The one exception tree of feedrank.

    FeedrankError                 anything feedrank raises on purpose
    ├── ConfigError               a configuration value or override is invalid
    ├── DataError                 input data cannot be used
    │   ├── SourceNotFoundError   an input file or directory does not exist
    │   ├── EmptySourceError      an input file holds no rows
    │   ├── BadRowError           one row is invalid (raised in --strict mode; else quarantined)
    │   └── DatasetError          a canonical dataset directory is missing parts or inconsistent
    ├── TrainError                training cannot go on
    │   ├── CheckpointError       a checkpoint cannot be read or does not fit the resuming run
    │   └── DivergedError         the loss became NaN or infinite
    └── BundleError               a model bundle is missing, incomplete or corrupted

The CLI turns these into a one-line message and a non-zero exit code; only the HTTP layer maps
them to status codes. Nothing else catches them.
"""

from __future__ import annotations

from pathlib import Path


class FeedrankError(Exception):
    """Base class of every error feedrank raises on purpose."""


class ConfigError(FeedrankError):
    """A configuration file, value or `--set key=value` override is invalid."""


class DataError(FeedrankError):
    """Input data cannot be used as it is."""


class SourceNotFoundError(DataError):
    """An input file or directory does not exist."""

    def __init__(self, path: Path | str, what: str = "input file") -> None:
        super().__init__(f"{what} not found: {path}")
        self.path = Path(path)


class EmptySourceError(DataError):
    """An input file exists but holds no rows."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(f"{path}: file is empty (0 rows)")
        self.path = Path(path)


class BadRowError(DataError):
    """One input row is invalid; the message names the file, row, field and value."""

    def __init__(self, file: str, row: int, field: str, value: str, reason: str) -> None:
        super().__init__(format_bad_row(file, row, field, value, reason))
        self.file = file
        self.row = row
        self.field = field
        self.value = value
        self.reason = reason


class DatasetError(DataError):
    """A canonical dataset directory is missing parts or is inconsistent."""


class TrainError(FeedrankError):
    """Training cannot go on."""


class CheckpointError(TrainError):
    """A checkpoint cannot be read, or does not fit the run that tries to resume from it."""


class DivergedError(TrainError):
    """The training loss became NaN or infinite."""


class BundleError(FeedrankError):
    """A model bundle is missing, incomplete or corrupted; it is refused, never half-loaded."""


def format_bad_row(file: str, row: int, field: str, value: str, reason: str) -> str:
    """The single wording of a bad-row message, shared by --strict errors and quarantine files."""
    return f"{file}: row {row}: field {field!r}: value {value!r}: {reason}"
