"""Real servers for tests: Kafka (KRaft, 1 or 3 nodes, SASL variant), PostgreSQL, console tools.

Used by the fixtures in tests/conftest.py and standalone: `python -m tests.harness kafka --nodes 3`.
"""
