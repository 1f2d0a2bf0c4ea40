"""Deterministic test tensors shared by the loss tests (imported as ``from kd_tensors import ...``).

Inputs are sin() of an index in float64, the same on every platform, so comparisons can be tight.
"""

from __future__ import annotations

import math

import torch

#: Real-token masks (B, T) with padding of different lengths; the first three rows are the
#: three-example batch, all four the four-example one.
MASK4 = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]).bool()
MASK3 = MASK4[:3]


def fixed(*shape: int, k: float, scale: float = 1.0) -> torch.Tensor:
    """A float64 tensor of ``shape`` holding ``scale * sin(k * i)`` for i = 1, 2, ..."""
    n = math.prod(shape)
    return (torch.sin(torch.arange(1, n + 1, dtype=torch.float64) * k) * scale).reshape(shape)
