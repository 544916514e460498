"""The feedback gateway: FeedbackService over gRPC and HTTP/JSON, a durable store, a rating page.

`server` (`FeedbackGateway`, its gRPC face), `http_app` (the aiohttp app), `page` and
`static/` (the rating page), `core` (auth, checks and counters shared by both faces), `store`
(SQLite) and `records` (its rows), `client` (gateway clients over HTTP or gRPC), `main` (the
`rewardloop feedback serve | forget` commands), `score_server` (a Python reward function
served as `FeedbackService.Score`), and `grpc_face` (the gRPC server under both).
"""
