"""Layer mappings, one module each, registered by name in ``LAYER_MAPPINGS``.

A mapping decides which student layer is distilled from which teacher layer, and with what
weight; see ``base.LayerMapping``. Adding a mapping is one new module here and its test.
"""

from study.objectives.mappings.base import LAYER_MAPPINGS, ConcatMapping, FixedMapping, LayerMapping

__all__ = ["LAYER_MAPPINGS", "ConcatMapping", "FixedMapping", "LayerMapping"]
