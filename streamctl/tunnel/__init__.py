"""The local Kafka-protocol tunnel: trio listeners, connection pipeline, upstream security."""
