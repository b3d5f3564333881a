#!/usr/bin/env python3
"""What the exporter's garbage-collector settings save: the same tree run twice side by side.

    python bench/gc_settings.py     # about 3 minutes; prints a table (docs/benchmarks-fleet.md)

One exporter runs as shipped (``settle_gc`` at start: ``gc.freeze()`` and a young-generation
threshold of 10,000); the other is the same code with ``settle_gc`` replaced by a no-op, so it
keeps Python's defaults. Both poll the same 10,000 simulated single instances every 15 s at the
same time (``bench/compare.py`` measures), so the machine's load falls on both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import compare
import run

DEFAULT_GC = (
    "-c",
    "import sys, whatsapp_support_exporter.cli.main as m; m.settle_gc = lambda: None; sys.argv[0] = 'exporter';"
    " m.main()",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    case = run.Case(
        "gc", f"{args.targets} single instances", singles=args.targets, interval=args.interval
    )
    case.window = args.interval
    sides = [
        compare.Side("baseline", run.ROOT, compare.CURRENT_ARGS, DEFAULT_GC),
        compare.Side("current", run.ROOT, compare.CURRENT_ARGS),
    ]
    with tempfile.TemporaryDirectory(prefix="wa-gc-") as tmp:
        figures = compare.compare(case, sides, args.rounds, Path(tmp))
    old, new = statistics.median(figures["baseline"]), statistics.median(figures["current"])
    print(
        f"| {case.label} every {args.interval:g} s | Python's defaults {old:.3f} ms | "
        f"settle_gc {new:.3f} ms | {new / old:.2f} |"
    )


if __name__ == "__main__":
    main()
