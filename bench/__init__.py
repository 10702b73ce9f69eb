"""Benchmarks for streamctl: `python -m bench` runs every section and writes bench-results.json."""
