"""Streaming evaluation over many streams at once: FRR and false accepts/hour.

Deployment asks two questions of a keyword model: how many keywords does it
miss (FRR), and how often does it fire when nobody said one (false accepts
per hour, FA/h)? Both are answered on long streams: streams with keywords at
known times (``synth_stream`` with a ground-truth CSV) and keyword-free
streams (hours of speech, noise and near-miss words). Each stream is run
through the model once, all streams batched together
(``models.streaming.stream_logits_many``: lax.scan over the step), its
posteriors smoothed as the detector smooths them, and every threshold of
the sweep is then applied to all streams together:

    FRR  = missed keywords / keywords of all streams,
    FA/h = false accepts of all streams / hours of all streams

(a detection on a keyword stream that matches no keyword is a false accept
too). Detection and matching are the detector's own (``kws_jax.detect``), so
the numbers are what ``python -m kws_jax.detect`` reports on each stream.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from kws_jax.data import audio as audio_lib
from kws_jax.data.synth_stream import KeywordEvent, read_stream_labels
from kws_jax.detect import detector as detector_lib
from kws_jax.detect import metrics
from kws_jax.models import Model, streaming


@dataclasses.dataclass(frozen=True)
class Stream:
  """A long recording and its keywords (none for a keyword-free stream)."""

  name: str
  audio: np.ndarray
  events: tuple[KeywordEvent, ...]

  @property
  def seconds(self) -> float:
    return len(self.audio) / audio_lib.SAMPLE_RATE

  @classmethod
  def from_wav(cls, path: str | os.PathLike) -> Stream:
    """Reads ``path`` and the ground truth beside it (same name, .csv).

    A stream without a CSV is keyword-free.
    """
    path = os.fspath(path)
    labels_csv = os.path.splitext(path)[0] + '.csv'
    events = (read_stream_labels(labels_csv) if os.path.exists(labels_csv)
              else [])
    return cls(os.path.basename(path), audio_lib.read_wav(path),
               tuple(events))


def load_streams(paths: Sequence[str | os.PathLike]) -> list[Stream]:
  """``Stream.from_wav`` of each path.

  Raises:
    ValueError: no path.
  """
  if not paths:
    raise ValueError('no streams to evaluate on')
  return [Stream.from_wav(path) for path in paths]


@dataclasses.dataclass(frozen=True)
class Posteriors:
  """Smoothed posteriors ``[blocks, labels]`` of one stream."""

  stream: Stream
  smoothed: np.ndarray
  block_s: float


def stream_posteriors(model: Model, params: Any, streams: Sequence[Stream], *,
                      smoothing_ms: float = detector_lib.DEFAULT_SMOOTHING_MS,
                      progress: bool = False) -> list[Posteriors]:
  """Runs all streams through the model at once and smooths their posteriors.

  One ``streaming.stream_logits_many`` call: the segments of all streams
  share the batches (for a recurrent model, one stream per batch row).
  """
  block_s = streaming.block_samples(model) / audio_lib.SAMPLE_RATE
  window = detector_lib.milliseconds_to_blocks('smoothing_ms', smoothing_ms,
                                               block_s, 1)
  logits = streaming.stream_logits_many(
      model, params, [stream.audio for stream in streams], progress=progress,
      description=f'streaming {len(streams)} streams')
  return [
      Posteriors(stream, detector_lib.smooth_posteriors(
          detector_lib.softmax(out), window), block_s)
      for stream, out in zip(streams, logits)
  ]


def sweep(posteriors: Sequence[Posteriors], labels: Sequence[str], *,
          refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
          thresholds: Sequence[float] = metrics.DEFAULT_THRESHOLDS
          ) -> list[metrics.OperatingPoint]:
  """One operating point per threshold, summed over all streams."""
  totals = None
  with warnings.catch_warnings():
    # Words that are not keywords are left out, as sweep says; one warning
    # per stream and call would drown the output.
    warnings.simplefilter('ignore', UserWarning)
    for item in posteriors:
      points = metrics.sweep(item.smoothed, labels, item.block_s,
                             item.stream.events, refractory_ms=refractory_ms,
                             thresholds=thresholds)
      if totals is None:
        totals = points
        continue
      totals = [
          metrics.OperatingPoint(
              total.threshold, total.detections + point.detections,
              total.false_accepts + point.false_accepts,
              total.misses + point.misses,
              total.occurrences + point.occurrences,
              total.hours + point.hours)
          for total, point in zip(totals, points)
      ]
  if totals is None:
    raise ValueError('no streams to sweep')
  return totals


def evaluate(model: Model, params: Any, labels: Sequence[str],
             streams: Sequence[Stream], *,
             smoothing_ms: float = detector_lib.DEFAULT_SMOOTHING_MS,
             refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
             thresholds: Sequence[float] = metrics.DEFAULT_THRESHOLDS,
             progress: bool = False) -> list[metrics.OperatingPoint]:
  """``sweep`` of ``stream_posteriors``: the streams' DET points."""
  return sweep(stream_posteriors(model, params, streams,
                                 smoothing_ms=smoothing_ms, progress=progress),
               labels, refractory_ms=refractory_ms, thresholds=thresholds)


def frr_at_budgets(points: Sequence[metrics.OperatingPoint],
                   budgets: Sequence[float]) -> dict[str, dict | None]:
  """``{'0.5': point as a dict or None, ...}``: the best point per FA/h budget."""
  result = {}
  for budget in budgets:
    best = metrics.frr_at(points, budget)
    result[f'{budget:g}'] = best.as_dict() if best else None
  return result
