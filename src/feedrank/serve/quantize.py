"""Optional INT8 serving: dynamic quantization of the towers' and the ranker's MLPs.

Linear layers get int8 weights and dynamically quantized activations; embedding tables stay
float32 (they are lookups, not matrix products, so int8 would save memory but no time here).
Uses torch.ao's eager-mode `quantize_dynamic`; torch marks that API deprecated in favour of
torchao, which is not a dependency of feedrank. The deprecation warning is silenced here only,
and the accuracy and latency change is measured by bench/bench_quantization.py.
"""

from __future__ import annotations

import copy
import warnings
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def quantize_linear_int8(model: M) -> M:
    """A copy of `model` (in eval mode) whose nn.Linear layers run in int8; the original is untouched."""
    clone = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        quantized: M = torch.ao.quantization.quantize_dynamic(clone, {nn.Linear}, dtype=torch.qint8)
    return quantized
