"""rewardloop: learn from feedback with Ray rollout actors, gRPC streams and a central learner."""
