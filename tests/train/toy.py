"""A tiny click task for the loop's tests: a sparse id table + dense features -> MLP -> click logit.

Ground truth is known: example i with id `ids[i]` and features `x[i]` clicks with probability
sigmoid(id_effect[ids[i]] + x[i] @ beta), so a trained model can beat the base rate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_IDS = 200
NUM_FEATURES = 4


class ToyNet(nn.Module):
    """ids (B,) int64, x (B, F) float32 -> logits (B,)."""

    def __init__(
        self,
        num_ids: int = NUM_IDS,
        dim: int = 8,
        hidden: int = 16,
        dropout: float = 0.0,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        self.table = nn.Embedding(num_ids, dim, sparse=sparse)
        self.mlp = nn.Sequential(
            nn.Linear(dim + NUM_FEATURES, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, ids: Tensor, x: Tensor) -> Tensor:
        h = torch.cat([self.table(ids), x], dim=-1)  # (B, D + F)
        logits: Tensor = self.mlp(h)  # (B, 1)
        return logits.squeeze(-1)  # (B,)


class ToyTask:
    """Mean binary cross-entropy of ToyNet's logits against the click labels."""

    def __init__(self, model: ToyNet) -> None:
        self.model = model

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = self.model(batch["ids"], batch["x"])  # (B,)
        loss = F.binary_cross_entropy_with_logits(logits, batch["y"])
        accuracy = ((logits > 0).float() == batch["y"]).float().mean()
        return loss, {"accuracy": float(accuracy)}


class TemperatureTask(nn.Module):
    """A Task that is an nn.Module because its loss owns a parameter (a learned logit scale)."""

    def __init__(self, model: ToyNet) -> None:
        super().__init__()
        self.model = model
        self.log_scale = nn.Parameter(torch.zeros(()))

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = self.model(batch["ids"], batch["x"]) * self.log_scale.exp()
        return F.binary_cross_entropy_with_logits(logits, batch["y"]), {}


def make_task(seed: int = 0, dropout: float = 0.0, num_ids: int = NUM_IDS) -> ToyTask:
    torch.manual_seed(seed)
    return ToyTask(ToyNet(num_ids=num_ids, dropout=dropout))


def make_data(
    num_examples: int, seed: int = 0, num_ids: int = NUM_IDS, zipf: float = 0.0
) -> dict[str, Tensor]:
    """ids (N,), x (N, F), y (N,) in {0., 1.} drawn from the ground-truth model.

    With `zipf` > 0, id k is drawn with probability proportional to (k + 1) ** -zipf (a long
    tail, like hashed news ids); else uniformly.
    """
    g = torch.Generator().manual_seed(10_000 + seed)
    id_effect = torch.randn(num_ids, generator=torch.Generator().manual_seed(99)) * 1.5
    beta = torch.tensor([1.0, -1.0, 0.5, 0.0])
    if zipf > 0:
        weights = (torch.arange(num_ids, dtype=torch.float64) + 1.0) ** -zipf
        ids = torch.multinomial(weights, num_examples, replacement=True, generator=g)
    else:
        ids = torch.randint(0, num_ids, (num_examples,), generator=g)
    x = torch.randn(num_examples, NUM_FEATURES, generator=g)
    p = torch.sigmoid(id_effect[ids] + x @ beta)
    y = (torch.rand(num_examples, generator=g) < p).float()
    return {"ids": ids, "x": x, "y": y}


def make_evaluate(valid: dict[str, Tensor]) -> Callable[[nn.Module], dict[str, float]]:
    """Validation log loss and accuracy of a ToyNet."""

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict[str, float]:
        logits = model(valid["ids"], valid["x"])
        log_loss = F.binary_cross_entropy_with_logits(logits, valid["y"])
        accuracy = ((logits > 0).float() == valid["y"]).float().mean()
        return {"log_loss": float(log_loss), "accuracy": float(accuracy)}

    return evaluate


def weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_weights_close(a: dict[str, Tensor], b: dict[str, Tensor], atol: float, rtol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:

        def message(detail: str, key: str = key) -> str:
            return f"{key}: {detail}"

        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=rtol, msg=message)
