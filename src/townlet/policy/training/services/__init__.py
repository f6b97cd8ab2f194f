"""townlet.policy.training.services."""
