"""Generated gRPC/protobuf code; produce it with `make protos` (never edit by hand)."""
