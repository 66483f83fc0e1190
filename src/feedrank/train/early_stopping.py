"""`EarlyStopping`: remember the best validation metric and say when to stop."""

from __future__ import annotations

import math
from typing import Any, Literal


class EarlyStopping:
    """Stop after `patience` evaluations in a row without improving on the best value.

    An improvement beats the best by more than `min_delta` (up for mode "max", down for "min").
    `patience` 0 never stops; the best value is tracked either way.
    """

    def __init__(self, mode: Literal["max", "min"], patience: int, min_delta: float = 0.0) -> None:
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_step = -1
        self.bad_evals = 0

    def update(self, value: float, step: int) -> bool:
        """Record `value` measured at `step`; True if it is a new best."""
        sign = 1.0 if self.mode == "max" else -1.0
        improved = (
            self.best is None
            or (math.isnan(self.best) and not math.isnan(value))
            or sign * (value - self.best) > self.min_delta
        )
        if improved:
            self.best, self.best_step, self.bad_evals = value, step, 0
        else:
            self.bad_evals += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_step = int(state["best_step"])
        self.bad_evals = int(state["bad_evals"])
