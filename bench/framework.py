"""The bench framework: sections, best-of-N timing, a Rich table, and bench-results.json.

A section is a module `bench/<name>.py` listed in `bench.sections.SECTIONS` with a
`run(options) -> SectionResult` function. Each result carries a table to show (side by side
rows) and a flat mapping of figures (name -> number). Figures from every run are merged
into one JSON object at the repo root, so sections written by different people (codec,
masking, tunnel, transcript) add to the same file without overwriting each other.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: bench-results.json lives at the repository root (the parent of this package).
RESULTS_PATH = Path(__file__).resolve().parent.parent / "bench-results.json"


@dataclass(frozen=True)
class BenchOptions:
    """Knobs every section honours: fewer repeats with --quick (CI smoke runs)."""

    quick: bool = False

    @property
    def repeats(self) -> int:
        return 3 if self.quick else 15


@dataclass
class SectionResult:
    """What one section measured: a table for people and figures for bench-results.json."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    #: figure name -> (minimum, description) for the summary's pass/miss column.
    targets: dict[str, tuple[float, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def best_of(
    fn: Callable[[], object],
    repeats: int,
    number: int = 1,
    clock: Callable[[], float] = time.thread_time,
) -> float:
    """Seconds per call of fn: the best of `repeats` rounds of `number` calls.

    The default clock is this thread's CPU time, so figures are "per core" and a busy shared
    machine (other processes stealing the CPU) does not count against the code measured.
    The best round is the one least disturbed; garbage is collected before each round so
    one round does not pay for another's.
    """
    fn()  # warm caches, imports and the specialising interpreter
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = clock()
        for _ in range(number):
            fn()
        best = min(best, (clock() - start) / number)
    return best


def merge_results(figures: Mapping[str, float], path: Path = RESULTS_PATH) -> dict[str, float]:
    """Merge figures into the JSON file (atomically), keeping figures other sections wrote."""
    current: dict[str, float] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                current = {k: v for k, v in loaded.items() if isinstance(v, int | float)}
        except (OSError, ValueError):
            current = {}
    current.update({k: float(v) for k, v in figures.items()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bench-results.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(sorted(current.items())), handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
    return current
