"""The dtype a module's ``dtype: auto`` setting means under the trainer's precision and device."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

DtypeChoice = Literal["auto", "float32", "bfloat16", "float16"]


def resolve_dtype(
    choice: DtypeChoice, precision: str | None, device: torch.device, on_gpu: torch.dtype | None = None
) -> torch.dtype:
    """The weights' dtype: ``choice`` when it names one; for ``auto`` the 16-bit dtype of a 16-bit
    trainer ``precision`` (``bf16-*`` bfloat16, ``16-*`` float16), else ``on_gpu`` on a CUDA device
    (a model that only runs inference), else float32.

    Args:
        choice: the module's setting.
        precision: the trainer's precision (``bf16-mixed``...); None without a trainer.
        device: where the model will run.
        on_gpu: the dtype of inference-only models on a GPU under a 32-bit precision; None keeps
            float32 (a trained model's frozen parts must match its 32-bit computation).
    """
    dtype = _resolve(choice, precision, device, on_gpu)
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        rank_zero_warn(
            "bfloat16 on this CPU is emulated: it has no AVX-512 or AMX, and PyTorch runs bf16 "
            "convolutions here hundreds of times slower than float32. On a CPU, merge "
            "configs/trainer/cpu.yaml (precision 32-true) or set the module's dtype to float32."
        )
    return dtype


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 kernels (AVX-512 or AMX); without them PyTorch emulates bf16 slowly."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _resolve(choice: DtypeChoice, precision: str | None, device: torch.device, on_gpu: torch.dtype | None) -> torch.dtype:
    if choice != "auto":
        return getattr(torch, choice)
    precision = str(precision or "32-true")
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    if on_gpu is not None and device.type == "cuda":
        return on_gpu
    return torch.float32
