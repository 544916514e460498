"""Batched sampling with per-token log-probabilities — shared by rollout workers and evaluation."""
