"""Timing shared by the benchmarks: two things measured side by side, interleaved, so a machine that
speeds up or slows down during the run moves both alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, each run once to warm up, then alternately ``repeats`` times."""
    a(), b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)
