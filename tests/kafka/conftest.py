"""Record-codec fixture: run a test module through the C codec and the pure-Python one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streamctl.kafka import records

PURE_PYTHON = os.environ.get("STREAMCTL_PURE_PYTHON", "") not in ("", "0")
#: With STREAMCTL_PURE_PYTHON set only the Python code runs; otherwise both, C first.
IMPLEMENTATIONS = ["python"] if PURE_PYTHON else ["c", "python"]


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def record_codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """Point streamctl.kafka.records at one implementation for a module's tests.

    Module scoped so hypothesis tests may use it; modules opt in with
    `pytestmark = pytest.mark.usefixtures("record_codec")`.
    """
    before = records.RECORDS_ACCELERATED
    active = records._select_implementation(request.param == "c")
    assert active == (request.param == "c"), "the C record codec did not import"
    try:
        yield request.param
    finally:
        records._select_implementation(before)
