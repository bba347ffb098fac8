"""Evaluation: metrics from counts (metrics.py), a split's metrics (split.py), generated-text metrics
(text.py) and a language model judged on what it generates itself (generated.py)."""
