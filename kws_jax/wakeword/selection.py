"""Checkpoint selection by the FRR at a target false-accept rate.

As microWakeWord does, the best checkpoint of a wake-word run is the one that
misses the fewest keywords on validation streams at a false-accept budget,
not the one of the highest clip accuracy:

    selector = StreamSelector(model, labels, streams, target_fa_per_hour=1)
    train_and_evaluate(config, workdir, selector=selector)

The validation streams must be audio the model never trains on: a stream with
keywords (FRR) and keyword-free ones (FA/h).

Score: the recall (``1 - FRR``) averaged over a ladder of budgets, the target
and four octaves above it (``target x 1, 2, 4, 8, 16`` FA/h), plus ``1e-3 x``
the clip validation accuracy to break ties (higher is better). A budget that
no threshold keeps adds a recall of 0. This is a partial area under the DET
curve on a log FA/h axis. The ladder matters when the target is out of reach
or decided by one or two false accepts, as it is on tens of minutes of
validation audio at 0.5-2 FA/h: the recall at the target alone then ranks
checkpoints by noise (measured: a 2 FA/h selection on 50 minutes kept step
750 of 1,500, 3 points below the last weights), while the looser budgets
still tell the better detector. The operating point written for the manifest
stays the one at the target itself.
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
LADDER_OCTAVES = 5  # budgets: the target and 4 doublings of it


def budgets(target_fa_per_hour: float) -> tuple[float, ...]:
  """The FA/h budgets the score averages over: the target, then doublings."""
  return tuple(target_fa_per_hour * 2**k for k in range(LADDER_OCTAVES))


def score(points: Sequence[metrics.OperatingPoint], target_fa_per_hour: float,
          accuracy: float) -> float:
  """The selection score of one checkpoint's threshold sweep (see above)."""
  recalls = [0.0 if best is None else 1.0 - best.frr
             for best in (metrics.frr_at(points, budget)
                          for budget in budgets(target_fa_per_hour))]
  return sum(recalls) / len(recalls) + _TIE_BREAK * accuracy


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
    points = self.points(params)
    scalars, ladder = {}, []
    for budget in budgets(self.target_fa_per_hour):
      best = metrics.frr_at(points, budget)
      ladder.append(f'{budget:g}: ' + ('-' if best is None else
                                       f'{best.frr:.1%}'))
      if best is not None:
        scalars[f'frr_at_{budget:g}'] = best.frr
    best = metrics.frr_at(points, self.target_fa_per_hour)
    target = f'{self.target_fa_per_hour:g} FA/h'
    if best is None:
      head = f'{target} not reached'
    else:
      scalars.update(frr=best.frr, fa_per_hour=best.fa_per_hour,
                     threshold=best.threshold)
      head = (f'FRR {best.frr:.1%} at {best.fa_per_hour:.2f} FA/h '
              f'(<= {target}, threshold {best.threshold:g})')
    return Selection(
        score(points, self.target_fa_per_hour, accuracy), scalars,
        f'validation streams: {head}; FRR at FA/h {", ".join(ladder)}')

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
