"""townlet.policy.training.strategies."""
