"""Intermediate losses, one module each, registered by name in ``INTERMEDIATE_LOSSES``.

A loss compares one student feature with one teacher feature (a layer pair chosen by the layer
mapping); see ``base.IntermediateLoss`` for the contract. Adding a loss is one new module here
(a subclass with ``name``) and its test: the registry imports this package's modules on first read.
"""

from study.objectives.losses.base import INTERMEDIATE_LOSSES, IntermediateLoss, LossContext

__all__ = ["INTERMEDIATE_LOSSES", "IntermediateLoss", "LossContext"]
