"""Deprecated (#11): re-exports ``strategies.anneal.step`` (the module moved)."""

from townlet.policy.training.strategies._moved import moved_module

__getattr__ = moved_module(
    __name__,
    (
        "townlet.policy.training.strategies.anneal.step",
        "townlet.policy.training.strategies.anneal.state",
        "townlet.policy.training.strategies.anneal.data",
    ),
)
