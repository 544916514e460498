"""The live-traffic front of rewardloop: a product's requests served by the policy in training.

Plain classes, no Ray (the replicas' Ray shells are in `cluster/serving.py`):
- `response_log`: the durable SQLite log of every served completion, its feedback and the join.
- `canary`: which version a user gets (stable, or the canary for a sticky share) and the test
  that promotes or rolls a canary back.
- `openai_api`: the OpenAI-compatible HTTP API (aiohttp) over a `Backend` that generates.
- `engine`: the in-process generator a replica wraps (and `bench serve` compares against).
- `live_learner`: the single-response estimator and the loop that trains on joined rewards.
"""
