"""Building blocks shared by the model families (attention, temporal roll, token keeping...)."""
