"""Commands of this topic are registered here (none yet)."""
