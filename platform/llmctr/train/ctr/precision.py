"""Mixed precision for the training step: ``train.precision``.

``bf16`` runs the forward pass under ``torch.autocast`` in bfloat16: matrix multiplies (Linear, bmm) take bf16
inputs, while the embedding tables, the loss, the gradients' accumulation into the fp32 weights and the optimiser
stay in fp32 (autocast's own op lists). It pays where the hardware multiplies bf16 natively: CPUs with AVX512-BF16
or AMX, and CUDA GPUs from Ampere on. Elsewhere bf16 is emulated and slower, so ``auto`` picks bf16 only where it
is native and fp32 otherwise. Evaluation and serving always run in fp32 (the weights are fp32).
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively (so autocast to bf16 is faster than fp32, not slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        except AttributeError:  # a torch without the probes: assume not
            return False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for this device; an explicit ``bf16`` on a device without native support still runs
    (emulated), with a warning."""
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        log.warning("train.precision bf16 on %s without native bf16 support: it runs, but slower than fp32", device)
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the forward pass runs in: autocast to bf16, or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
