"""townlet.world."""
