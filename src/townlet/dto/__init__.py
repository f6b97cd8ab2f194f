"""townlet.dto."""
