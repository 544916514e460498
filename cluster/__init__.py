"""The only Ray code: thin actor shells, placement, the rollout pool and the `Run` driver."""
