"""`python -m bench [--quick] [section ...]`: run benchmark sections, print, write JSON."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

from rich.console import Console
from rich.table import Table

from bench.framework import RESULTS_PATH, BenchOptions, SectionResult, merge_results
from bench.sections import SECTIONS


def _section_table(result: SectionResult) -> Table:
    table = Table(title=result.title, title_justify="left")
    for i, column in enumerate(result.columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in result.rows:
        table.add_row(*row)
    return table


def _summary_table(results: list[SectionResult]) -> Table:
    table = Table(title="Figures written to bench-results.json", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    for result in results:
        for name, value in result.figures.items():
            target = result.targets.get(name)
            if target is None:
                verdict = ""
            else:
                minimum, _ = target
                ok = value >= minimum
                verdict = f"[{'green' if ok else 'red'}]>= {minimum:g} {'ok' if ok else 'MISSED'}"
            table.add_row(name, f"{value:,.3f}" if value < 1000 else f"{value:,.0f}", verdict)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", help=f"sections to run (default: all of {SECTIONS})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {SECTIONS}")
    options = BenchOptions(quick=args.quick)
    console = Console()
    console.print(
        f"streamctl bench on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs{' (quick)' if args.quick else ''}"
    )
    results: list[SectionResult] = []
    failed = False
    for name in args.sections or SECTIONS:
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            result: SectionResult = module.run(options)
        except Exception as exc:  # a broken section must not hide the others' figures
            console.print(f"[red]section {name} failed: {type(exc).__name__}: {exc}")
            failed = True
            continue
        results.append(result)
        console.print(_section_table(result))
        for note in result.notes:
            console.print(f"  [dim]{note}")
        console.print(f"  [dim]{name}: {time.perf_counter() - started:.1f}s")
        merge_results(result.figures)  # after each section, so a later crash loses nothing
    console.print(_summary_table(results))
    console.print(f"written: {RESULTS_PATH}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
