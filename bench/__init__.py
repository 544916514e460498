"""Benchmarks that print their figures as JSON (`rewardloop bench NAME --json`); see README.md."""
