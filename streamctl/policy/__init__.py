"""Grants and the per-request authorization decision, sans-I/O."""
