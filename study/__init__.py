"""kd-study: reproducible empirical studies of knowledge distillation for transformer LMs.

Data flow: a grid (``study/grids/*.yaml``) is expanded into cells (``study.grid``); each cell
trains a student against a cached teacher (``study.execution.teacher``, ``study.training.trainer``) and logs to
MLflow (``study.execution.tracking``); ``analysis`` reads what MLflow holds.
"""

__version__ = "0.1.0"
