"""Deprecated (#11): re-exports ``townlet.policy.training.telemetry_log`` (the module moved)."""

from townlet.policy.training.strategies._moved import moved_module

__getattr__ = moved_module(__name__, ("townlet.policy.training.telemetry_log",))
