"""The central learner: ingest, buffer, credits, algorithms, trainer, weights, checkpoints."""
