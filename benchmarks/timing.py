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
