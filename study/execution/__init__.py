"""Execution: tracking, locks, teacher and data caches, running cells, workers, executors, forecasts."""
