"""Reads what a study logged to MLflow and turns it into tables, statistics and a report.

Analysis never trains anything: it only reads the MLflow store that ``study run`` writes.

- ``analysis.table``: one tidy row per finished cell (``load_runs``), cell status (``run_status``),
  the default tracking URI.
- ``analysis.anova``: contributions of each factor (type-II ANOVA with partial eta squared and
  omega squared, mixed effects with datasets as random intercepts, seed bootstrap intervals,
  pairwise comparisons).
- ``analysis.cost``: what committing to a level costs when the rest is tuned (``tuned_cost``),
  and on balanced grids the averaged cost (Sultan et al. 2024's question).
- ``analysis.recipe``: the best single recipe across blocks and the best level per factor.
- ``analysis.recommend``: a recommender for a new dataset, evaluated leave-one-dataset-out
  (the Distiller paper's AutoDistiller idea).
- ``analysis.csvtable``: any results CSV (e.g. the published Distiller table) as a checked table.
- ``analysis.figures``: main effects, interaction heat-map, cost bars, score against data size.
- ``analysis.analyze``: what ``study analyze`` runs (ANOVA, costs, best recipe, files).
- ``analysis.report``: executes ``notebooks/report.ipynb`` with papermill and writes HTML.

Submodules are imported on demand, so ``import analysis`` stays cheap (no MLflow, statsmodels or
matplotlib).
"""
