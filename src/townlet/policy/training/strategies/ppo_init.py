"""Deprecated (#11): re-exports ``strategies.ppo.start`` (the module moved)."""

from townlet.policy.training.strategies._moved import moved_module

__getattr__ = moved_module(
    __name__,
    (
        "townlet.policy.training.strategies.ppo.start",
        "townlet.policy.training.strategies.ppo.checkpoint",
    ),
)
