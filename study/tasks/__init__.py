"""Tasks: the task catalogue (``*.yaml`` beside this file), readers of its formats, task types' base, metrics."""
