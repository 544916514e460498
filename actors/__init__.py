"""Rollout workers in plain Python: the generation loop, the trajectory and weight clients."""
