"""Where rewards come from, in three rooms.

`sources/` holds the reward sources rollout workers call (persona, function, HTTP, gRPC,
human, combined, the content check) and the factory that builds one from config;
`gateway/` holds the feedback gateway (gRPC + HTTP server, durable store, rating page, the
Score server) and its clients; `sim/` holds the simulated audiences (news-feed readers,
help-desk users) and the gateway load test. `evaluation.py` scores a policy with a source.
"""
