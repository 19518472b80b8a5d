"""The one timing rule of the benchmarks: warm up, then the median wall time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1,
                   block: Callable[[Any], Any] = lambda result: result
                   ) -> float:
  """Median wall seconds of ``block(fn())`` over ``repeats`` calls.

  ``warmup`` calls run first, untimed (compilation, caches); pass
  ``block=jax.block_until_ready`` to time asynchronously dispatched work.
  """
  for _ in range(warmup):
    block(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def interleaved_median_seconds(fns: dict[str, Callable[[], Any]],
                               rounds: int, warmup: int = 1,
                               block: Callable[[Any], Any] = lambda r: r
                               ) -> dict[str, float]:
  """Median wall seconds of each of ``fns``, timed in turn in every round.

  On a shared machine a slow spell then falls on all of them alike, not on
  whichever ran during it.
  """
  for fn in fns.values():
    for _ in range(warmup):
      block(fn())
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      block(fn())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(values) for name, values in times.items()}
