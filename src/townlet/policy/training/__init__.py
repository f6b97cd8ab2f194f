"""townlet.policy.training."""
