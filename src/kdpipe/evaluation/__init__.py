"""Measuring models: metrics, robustness, validation, reports and plots."""
