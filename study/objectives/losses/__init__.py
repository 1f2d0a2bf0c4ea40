"""Intermediate losses, one module each, registered by name in ``INTERMEDIATE_LOSSES``.

A loss compares one student feature with one teacher feature (a layer pair chosen by the layer
mapping); see ``base.IntermediateLoss`` for the contract. Adding a loss is one new module here
(a subclass with ``name``) and its test: modules are discovered on import.
"""

from study.objectives.component import discover
from study.objectives.losses.base import INTERMEDIATE_LOSSES, IntermediateLoss, LossContext

discover(__name__)

__all__ = ["INTERMEDIATE_LOSSES", "IntermediateLoss", "LossContext"]
