"""townlet.envs."""
