"""Reward sources: what a rollout worker asks for rewards, behind one `RewardSource` interface.

`base` (the interface), `factory` (`make_reward_source` from config), `function_source`,
`http_source`, `grpc_source`, `human_source` (delayed ratings through the gateway),
`combined` (a weighted sum of sources), `content_check` (the check run before anyone sees an
item, used here and by the gateway), `remote` (what the reward-service sources share: config
knobs, batches, the answer check) and `transport` (the HTTP/gRPC client plumbing with
deadlines and retries that the remote sources and the gateway clients share).
"""
