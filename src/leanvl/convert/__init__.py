"""Converters from official checkpoints to leanvl checkpoint folders (no pickled code runs)."""
