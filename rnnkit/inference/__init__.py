"""Predictions of trained runs on new inputs: text lines for language identification (classify.py), history
for forecasting (forecast.py), lines read as they arrive (lines.py), one entry point for both (predict.py)."""
