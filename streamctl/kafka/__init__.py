"""Kafka wire protocol, sans-I/O: frames, headers, messages, record batches, rewrites.

framing (size-prefixed frames, plain-words diagnosis) -> headers (request v1/v2, response
v0/v1) -> messages (bounded, schema-driven decode/encode on kafka-python's classes) ->
summary (what a request asks for) / refusals (local error answers) / versions (ApiVersions
clamp, KIP-511) / rewrite (advertised addresses, Metadata filtering); records and
compression handle magic-2 record batches. errors says whose fault a bad byte is.
"""
