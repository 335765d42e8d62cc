"""Run analysis on top of the evaluator: is B really better than A (``significance``), what one
model finds that the other misses (``compare``), one table over training runs (``report``), and
their plots."""
