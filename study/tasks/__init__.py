"""Tasks: the task catalogue (``*.yaml`` beside this file, ``catalogue``), what a task is
(``spec``), its YAML schema (``schema``), file readers (``formats``), split rules (``splits``),
the hub (``hub``), metrics (``metrics``) and the task-type base and registry (``types``)."""
