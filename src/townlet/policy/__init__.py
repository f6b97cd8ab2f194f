"""townlet.policy."""
