"""Measuring a policy: deterministic episodes, confidence intervals, videos and plots."""
