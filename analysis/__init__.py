"""Reads what a study logged to MLflow and turns it into tables, statistics and a report.

Analysis never trains anything: it only reads the MLflow store that ``study run`` writes (through
the names in ``study.core.contract``), and it imports nothing of ``study`` beyond ``study.core``.

- ``analysis.table``: one tidy row per finished cell (``load_runs``), the grid's factors, the
  default tracking URI.
- ``analysis.csvtable``: any results CSV (e.g. the published Distiller table) as a checked table.
- ``analysis.columns``: the one check that a table has the columns a function needs.
- ``analysis.anova``: contributions of each factor (type-II ANOVA with partial eta squared and
  omega squared, mixed effects with datasets as random intercepts, seed bootstrap intervals,
  pairwise comparisons, slopes of numeric factors).
- ``analysis.bootstrap``: the cluster bootstrap (replicate units resampled), for refitted statistics.
- ``analysis.smallsample``: the t-interval on unit values (G − 1 df) and the exact sign-flip test
  over units behind the claims' verdicts, and their coverage by simulation;
  ``analysis.verdicts``: the verdict rule (interval and test agree, at least ``MIN_UNITS`` units).
- ``analysis.power``: minimum detectable effect, units needed, simulated power of a design;
  ``analysis.planning``: sizing a grid for a contrast from a pilot (``study plan``).
- ``analysis.seednoise``: seed-to-seed s.d. per dataset and the seeds' share of the variance.
- ``analysis.cost``: what committing to a level costs when the rest is tuned (``tuned_cost``),
  and on balanced grids the averaged cost (Sultan et al. 2024's question).
- ``analysis.recipe``: the best single recipe across blocks and the best level per factor.
- ``analysis.dataset_features``: dataset features for the recommender (the published
  AutoDistiller ones, or derived from a run table).
- ``analysis.recommend``: a recommender of configurations for a new dataset (the Distiller
  paper's AutoDistiller idea); ``analysis.lodo`` evaluates it leave-one-dataset-out.
- ``analysis.claims``: the seed studies' claims (``claims.yaml``) with a checked parameter schema
  per test; ``analysis.claim_tests``: the tests; ``analysis.findings``: evaluates every claim on
  the store and writes the findings (``study findings``).
- ``analysis.figures``: main effects, interaction heat-map, cost bars, score against data size.
- ``analysis.analyze``: what ``study analyze`` runs (ANOVA, costs, best recipe, files).
- ``analysis.report``: executes ``analysis/notebooks/report.ipynb`` with papermill and writes HTML.

Submodules are imported on demand, so ``import analysis`` stays cheap (no MLflow, statsmodels or
matplotlib).
"""
