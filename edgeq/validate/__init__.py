"""Validation: metrics against the float reference, runners that execute artifacts, budgets and verdicts."""
