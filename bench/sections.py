"""The benchmark sections, in the order `python -m bench` runs them.

Add a section by writing bench/<name>.py with `run(options: BenchOptions) -> SectionResult`
and adding its name here (one line).
"""

from __future__ import annotations

SECTIONS: list[str] = [
    "codec",
    "masking",
    "tunnel",
    "transcripts",
]
