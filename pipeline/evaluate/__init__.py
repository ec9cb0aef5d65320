"""Scoring a label set against a collection's ground truth: what is compared (inputs: manifest,
masks, gt/), the metrics on masks (metrics), the scoring walk over gt/ (score: evaluate_labels)
and its summary and terminal tables (summary).

Only this package (reading through inputs) and the report built on it may read a collection's gt/.
"""
