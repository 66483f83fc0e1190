"""Mixed precision: which autocast dtype to use, and whether to scale the loss.

    amp="off"   float32 everywhere
    amp="bf16"  autocast to bfloat16 (CPU or CUDA); no loss scaling: bf16 has float32's range
    amp="fp16"  autocast to float16 with a GradScaler (CUDA; also runs on CPU, slowly)
    amp="auto"  fp16 on CUDA; bf16 on a CPU with native bf16 (AVX512-BF16 or AMX); else off

Weights, optimizer states and sparse embedding lookups stay float32: autocast only lowers the
matmul-heavy ops (nn.Linear), which is where the time goes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from feedrank.artifacts.train_config import Amp


@dataclass(frozen=True)
class Precision:
    amp: Amp  # resolved: never "auto"
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)

    @property
    def needs_scaler(self) -> bool:
        return self.amp == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is a no-op unless fp16 needs it (so the loop has one code path)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def cpu_has_native_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(amp: Amp, device: torch.device) -> Precision:
    if amp == "auto":
        native_bf16 = cpu_has_native_bf16()
        amp = "fp16" if device.type == "cuda" else "bf16" if native_bf16 else "off"
    return Precision(amp=amp, device_type=device.type)
