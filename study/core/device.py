"""The device a run uses, its mixed-precision context, and its peak memory."""

from __future__ import annotations

import resource

import torch


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


def autocast(device: torch.device):
    """The mixed-precision context for ``device``: bf16 autocast on CUDA, none (fp32) on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
