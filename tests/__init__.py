"""streamctl's test suite (a package so `python -m tests.harness` works)."""
