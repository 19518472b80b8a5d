"""Hard-negative mining: the windows of keyword-free audio a model fires on.

    bank = mine(model, params, labels, negative_streams, threshold=0.5)
    save_bank('runs/x/mined_round1.npz', bank)   # then retrain with it

Each stream is run through the model batched (``models.streaming``), its
posteriors smoothed and thresholded as the detector does; for every false
accept, the clip-long windows ending at the blocks of its smoothing window
(where the posterior rose) are kept, labelled ``_unknown_``. A threshold
below the deployed one also mines the near-misses that would fire with a
little more noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kws_jax.data import windows as windows_lib
from kws_jax.detect import detector as detector_lib
from kws_jax.detect import metrics
from kws_jax.models import Model, streaming
from kws_jax.wakeword import streams as streams_lib


def mine(model: Model, params: Any, labels: Sequence[str],
         streams: Sequence[streams_lib.Stream], *, threshold: float,
         window_samples: int,
         smoothing_ms: float = detector_lib.DEFAULT_SMOOTHING_MS,
         refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
         progress: bool = False) -> tuple[windows_lib.WindowBank, int]:
  """The mined windows of keyword-free streams, and the false accepts found.

  Raises:
    ValueError: a stream with keywords (mining needs keyword-free audio), or
      a threshold outside (0, 1].
  """
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f'threshold={threshold}, expected 0 < threshold <= 1')
  for stream in streams:
    if stream.events:
      raise ValueError(f'{stream.name} has {len(stream.events)} keywords; '
                       'mining needs keyword-free streams')
  block = streaming.block_samples(model)
  found = []
  false_accepts = 0
  for item in streams_lib.stream_posteriors(model, params, streams,
                                            smoothing_ms=smoothing_ms,
                                            progress=progress):
    detections = metrics.detections_at(item.smoothed, labels, item.block_s,
                                       threshold, refractory_ms)
    false_accepts += len(detections)
    rows = detector_lib.milliseconds_to_blocks('smoothing_ms', smoothing_ms,
                                               item.block_s, 1)
    for detection in detections:
      end_block = int(round(detection.time_s / item.block_s))
      for ending in range(max(1, end_block - rows + 1), end_block + 1):
        found.append(windows_lib.window_ending_at(
            item.stream.audio, ending * block, window_samples))
  if not found:
    empty = np.zeros((0, window_samples), np.int16)
    return windows_lib.WindowBank(empty, ()), 0
  bank = windows_lib.from_windows(np.stack(found),
                                  [windows_lib.NEGATIVE_WORD] * len(found))
  return bank, false_accepts
