"""Evaluation: eval sets, study design, preference statistics and promotion decisions."""
