"""Deprecated (#11): re-exports ``strategies.bc.epoch`` (the module moved)."""

from townlet.policy.training.strategies._moved import moved_module

__getattr__ = moved_module(__name__, ("townlet.policy.training.strategies.bc.epoch",))
