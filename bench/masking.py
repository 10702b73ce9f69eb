"""Masking throughput (placeholder until streamctl.masking lands)."""

from __future__ import annotations

from bench.framework import BenchOptions, SectionResult


def run(options: BenchOptions) -> SectionResult:
    raise RuntimeError("streamctl.masking is not there yet")
