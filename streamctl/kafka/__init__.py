"""Kafka wire protocol, sans-I/O: frames, headers, messages, record batches, rewrites."""
