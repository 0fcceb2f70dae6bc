"""Quality filters."""
