"""Reads what a study logged to MLflow and turns it into tables, statistics and a report.

Analysis never trains anything: it only reads the MLflow store that ``study run`` writes.

- ``analysis.table``: one tidy row per finished cell (``load_runs``), cell status (``run_status``),
  the default tracking URI.
- ``analysis.anova``: contributions of each factor (type-II ANOVA with partial eta squared and
  omega squared, mixed effects with datasets as random intercepts, seed bootstrap intervals,
  pairwise comparisons).
- ``analysis.report``: executes ``notebooks/report.ipynb`` with papermill and writes HTML.

Submodules are imported on demand, so ``import analysis`` stays cheap (no MLflow, statsmodels or
matplotlib).
"""
