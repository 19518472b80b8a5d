"""Checkpoint selection by the FRR at a target false-accept rate.

As microWakeWord does, the best checkpoint of a wake-word run is the one that
misses the fewest keywords on validation streams at a false-accept budget,
not the one of the highest clip accuracy:

    selector = StreamSelector(model, labels, streams, target_fa_per_hour=1)
    train_and_evaluate(config, workdir, selector=selector)

The validation streams must be audio the model never trains on: a stream with
keywords (FRR) and keyword-free ones (FA/h).

Score: ``1 - FRR`` at the target (higher is better), plus ``1e-3 x`` the clip
validation accuracy to break ties; a checkpoint that no threshold keeps
within the target scores below any that reaches it: ``-1 + 1e-3 x accuracy``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from kws_jax.atomic import write_json
from kws_jax.detect import detector as detector_lib
from kws_jax.detect import metrics
from kws_jax.models import Model
from kws_jax.train import Selection
from kws_jax.train.workdir import OPERATING_POINT_FILE
from kws_jax.wakeword import streams as streams_lib

_TIE_BREAK = 1e-3


def score(best: metrics.OperatingPoint | None, accuracy: float) -> float:
  """The selection score of a run's best point at the target (see above)."""
  if best is None:
    return -1.0 + _TIE_BREAK * accuracy
  return 1.0 - best.frr + _TIE_BREAK * accuracy


class StreamSelector:
  """A ``kws_jax.train.Selector``: FRR at ``target_fa_per_hour`` on streams."""

  def __init__(self, model: Model, labels: Sequence[str],
               streams: Sequence[streams_lib.Stream], *,
               target_fa_per_hour: float,
               smoothing_ms: float = detector_lib.DEFAULT_SMOOTHING_MS,
               refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS):
    if target_fa_per_hour <= 0:
      raise ValueError(f'target_fa_per_hour={target_fa_per_hour}, expected > 0')
    detector_lib.keyword_indices(labels)  # at least one keyword
    self.model = model
    self.labels = tuple(labels)
    self.streams = tuple(streams)
    self.target_fa_per_hour = target_fa_per_hour
    self.smoothing_ms = smoothing_ms
    self.refractory_ms = refractory_ms

  def points(self, params: Any) -> list[metrics.OperatingPoint]:
    return streams_lib.evaluate(self.model, params, self.labels, self.streams,
                                smoothing_ms=self.smoothing_ms,
                                refractory_ms=self.refractory_ms)

  def __call__(self, params: Any, accuracy: float) -> Selection:
    best = metrics.frr_at(self.points(params), self.target_fa_per_hour)
    target = f'{self.target_fa_per_hour:g} FA/h'
    if best is None:
      return Selection(score(None, accuracy), {},
                       f'validation streams: {target} not reached')
    return Selection(
        score(best, accuracy),
        {'frr': best.frr, 'fa_per_hour': best.fa_per_hour,
         'threshold': best.threshold},
        f'validation streams: FRR {best.frr:.1%} at {best.fa_per_hour:.2f} '
        f'FA/h (<= {target}, threshold {best.threshold:g})')

  def operating_point(self, params: Any) -> dict[str, Any]:
    """The detector settings for the target, with what they give.

    Keys: ``threshold`` (None when the target is not reached), ``smoothing_ms``,
    ``refractory_ms``, ``target_fa_per_hour``, ``frr``, ``fa_per_hour``,
    ``validation_hours`` and ``validation_streams``.
    """
    points = self.points(params)
    best = metrics.frr_at(points, self.target_fa_per_hour)
    return {
        'threshold': best.threshold if best else None,
        'smoothing_ms': self.smoothing_ms,
        'refractory_ms': self.refractory_ms,
        'target_fa_per_hour': self.target_fa_per_hour,
        'frr': best.frr if best else None,
        'fa_per_hour': best.fa_per_hour if best else None,
        'validation_hours': points[0].hours,
        'validation_streams': [stream.name for stream in self.streams],
    }


def write_operating_point(workdir: str, point: dict[str, Any]) -> str:
  """Writes ``workdir/operating_point.json`` (atomically); returns its path."""
  return write_json(os.path.join(workdir, OPERATING_POINT_FILE), point)


def read_operating_point(workdir: str) -> dict[str, Any] | None:
  """The operating point of a run, or None if it has none."""
  path = os.path.join(workdir, OPERATING_POINT_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as file:
    return json.load(file)
