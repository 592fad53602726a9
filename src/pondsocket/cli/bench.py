"""``pondsocket bench``: the benchmark suite is a separate distribution
(``pondsocket-bench``, the repository's ``benchmarks/``), not part of this package."""

from __future__ import annotations

import importlib
import sys

BENCH_MISSING = (
    "pondsocket bench: error: the benchmarks are a separate package: in a clone of the"
    " pondsocket repository, pip install -e ./benchmarks"
)


def bench_command(arguments: list[str]) -> int:
    try:  # by name: the library neither depends on it nor type-checks against it
        bench = importlib.import_module("pondsocket_bench")
    except ModuleNotFoundError as exc:
        if exc.name != "pondsocket_bench":
            raise  # installed but broken: show the real error
        print(BENCH_MISSING, file=sys.stderr)
        return 2
    status: int = bench.main(arguments)
    return status
