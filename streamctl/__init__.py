"""streamctl: scoped, time-boxed, audited access to Apache Kafka."""

__version__ = "0.1.0.dev0"
