"""The device a run uses, its precision (``fp32``, ``bf16``, ``fp16``: the mixed-precision
context and, for fp16, the gradient scaler), what precisions it supports, and its peak memory."""

from __future__ import annotations

import resource
from contextlib import AbstractContextManager

import torch

from study.core.errors import StudyConfigError

#: The precisions a training or teacher budget may name; ``fp32`` (no autocast) is the default.
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda`` as given.

    Raises:
        ValueError: ``cuda`` requested without a GPU, or an unknown device string.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"Unknown device {device!r}: use auto, cpu or cuda.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' requested but torch sees no GPU; use --device cpu or auto.")
    return torch.device(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA allocator peak on GPU; peak resident set of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX, as oneDNN sees it)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def supported_precisions(device: torch.device) -> tuple[str, ...]:
    """The precisions ``device`` can train in: fp32 always; bf16 on a CPU that runs it natively
    (``cpu_bf16_supported``) or a CUDA GPU that supports it; fp16 on CUDA only."""
    if device.type == "cuda":
        return ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    return ("fp32", "bf16") if cpu_bf16_supported() else ("fp32",)


def check_precision(device: torch.device, precision: str, where: str = "precision") -> None:
    """Refuse a precision ``device`` cannot run, before any training.

    Raises:
        StudyConfigError: an unknown precision, or one ``device`` does not support (the message
            names the device and what it supports).
    """
    if precision not in PRECISIONS:
        raise StudyConfigError(f"{where}: unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    supported = supported_precisions(device)
    if precision not in supported:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "this CPU"
        raise StudyConfigError(f"{where}: {precision} is not supported on device {device.type} ({name}); "
                               f"it supports {', '.join(supported)}.")


def autocast(device: torch.device, precision: str = "fp32") -> AbstractContextManager:
    """The mixed-precision context for ``precision`` on ``device``: none for ``fp32``, else
    ``torch.autocast`` with bf16 or fp16, the same on CPU and CUDA.

    Raises:
        KeyError: an unknown precision.
    """
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 needs (its gradients underflow without one); None for fp32 and bf16."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
