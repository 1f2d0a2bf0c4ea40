"""Distillation objectives: a prediction-layer loss plus intermediate entries, each a component.

| part                 | module                      | registry                                |
|----------------------|-----------------------------|-----------------------------------------|
| prediction layer     | ``prediction.py``           | ``DISTANCES`` (kl, soft_ce, mse)        |
| intermediate feature | ``features.py``             | ``FEATURES``                            |
| intermediate loss    | ``losses/<name>.py``        | ``INTERMEDIATE_LOSSES``                 |
| layer mapping        | ``mappings/<name>.py``      | ``LAYER_MAPPINGS``                      |
| named objectives     | ``presets.py``              | ``PRESETS`` (ce, logit_kd, ...)         |
| the composition      | ``distillation.py``         | ``Distillation``, ``KDInputs``          |

A new loss or mapping is one module in ``losses/`` or ``mappings/`` and its test.
"""

from study.objectives.distillation import Distillation, KDInputs, ModelDims
from study.objectives.features import FEATURES, FeatureSource, FeatureTap
from study.objectives.intermediate import resolve_entry
from study.objectives.losses import INTERMEDIATE_LOSSES
from study.objectives.mappings import LAYER_MAPPINGS
from study.objectives.prediction import DISTANCES
from study.objectives.presets import PRESETS

__all__ = ["DISTANCES", "FEATURES", "INTERMEDIATE_LOSSES", "LAYER_MAPPINGS", "PRESETS", "Distillation",
           "FeatureSource", "FeatureTap", "KDInputs", "ModelDims", "resolve_entry"]
