"""Streaming evaluation: false rejects and false accepts per hour over thresholds.

The smoothed posteriors of a long stream are computed once (``Detector(...,
record=True)``); each threshold then only re-runs ``detector.trigger`` on
them, so a sweep of a hundred thresholds costs seconds per hour of audio.

Matching: a detection of word ``w`` at ``t`` matches a ground-truth
occurrence of ``w`` when ``start_s <= t <= end_s + 1 s`` (to within 1 us).
Each occurrence matches at most one detection and each detection at most one
occurrence; every detection left unmatched is a false accept, every
occurrence left unmatched a false reject (a miss):

    FRR = misses / occurrences,   FA/h = false accepts / hours of audio.
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import os
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from kws_jax.atomic import atomic_write, write_json
from kws_jax.data.synth_stream import KeywordEvent
from kws_jax.detect import detector as detector_lib
from kws_jax.detect.detector import Detection

# A detection may come this long after the word's end. The smoothed
# posterior of a confident model crosses a high threshold late: at 0.999, a
# 2 s-window wake-word model fired a median 0.48 s and a 90th percentile
# 0.58 s after the end; with 0.5 s, a third of its hits counted as a miss and
# a false accept. 1 s is also the refractory time: the word stays in the
# model's window, and may fire, that long.
TOLERANCE_S = 1.0
FA_BUDGETS = (0.5, 1.0)  # false accepts per hour, for the FRR summary
# 0.01 .. 0.99, then finer steps towards 1, where models held to a false
# accept or two per hour operate.
DEFAULT_THRESHOLDS = tuple(np.round(np.concatenate([
    np.arange(1, 100) / 100,
    [0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999]]), 4).tolist())
_EPSILON_S = 1e-6  # far below one sample: absorbs rounding of times


@dataclasses.dataclass(frozen=True)
class Match:
  """Detections against the ground truth of one stream."""

  hits: int
  false_accepts: int
  misses: int

  @property
  def occurrences(self) -> int:
    return self.hits + self.misses


def match(detections: Sequence[Detection], events: Sequence[KeywordEvent],
          tolerance_s: float = TOLERANCE_S) -> Match:
  """Matches detections to occurrences (see the module docstring).

  Detections are taken in time order, each by the unmatched occurrence of
  its word that contains it and ends first: for points and intervals this
  greedy choice matches as many as possible. O((D + E) log E).
  """
  by_start = sorted(events, key=lambda e: e.start_s)
  open_ends: dict[str, list[float]] = {}  # word -> heap of deadlines
  started = hits = 0
  for detection in sorted(detections, key=lambda d: d.time_s):
    while (started < len(by_start) and
           by_start[started].start_s - _EPSILON_S <= detection.time_s):
      event = by_start[started]
      heapq.heappush(open_ends.setdefault(event.word, []),
                     event.end_s + tolerance_s + _EPSILON_S)
      started += 1
    deadlines = open_ends.get(detection.word, [])
    while deadlines and deadlines[0] < detection.time_s:
      heapq.heappop(deadlines)  # ended too long ago: a miss
    if deadlines:
      heapq.heappop(deadlines)
      hits += 1
  return Match(hits, len(detections) - hits, len(events) - hits)


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
  """The outcome of one threshold on one stream."""

  threshold: float
  detections: int
  false_accepts: int
  misses: int
  occurrences: int
  hours: float

  @property
  def frr(self) -> float:
    """Missed occurrences / occurrences (0 when there are none)."""
    return self.misses / self.occurrences if self.occurrences else 0.0

  @property
  def fa_per_hour(self) -> float:
    return self.false_accepts / self.hours

  def as_dict(self) -> dict[str, float]:
    return {**dataclasses.asdict(self), 'frr': self.frr,
            'fa_per_hour': self.fa_per_hour}

  @classmethod
  def from_dict(cls, row: dict[str, Any]) -> 'OperatingPoint':
    """The inverse of ``as_dict`` (derived keys are ignored)."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


def detections_at(smoothed: np.ndarray, labels: Sequence[str],
                  block_s: float, threshold: float, refractory_ms: float
                  ) -> list[Detection]:
  """What a ``Detector`` with ``threshold`` fires on recorded posteriors.

  Args:
    smoothed: float32 ``[blocks, labels]`` smoothed posteriors, one row per
      block of ``block_s`` seconds (``Detector.recorded()``).
    labels: the runner's labels.
    block_s: seconds per block.
    threshold, refractory_ms: as for ``Detector``.
  """
  keywords = detector_lib.keyword_indices(labels)
  refractory = detector_lib.milliseconds_to_blocks(
      'refractory_ms', refractory_ms, block_s, 1)
  fired = detector_lib.trigger(
      smoothed[:, keywords], threshold, refractory,
      detector_lib.TriggerState.initial(len(keywords), refractory))
  return [Detection(labels[keywords[k]], (row + 1) * block_s, score)
          for row, k, score in fired]


def sweep(smoothed: np.ndarray, labels: Sequence[str], block_s: float,
          events: Sequence[KeywordEvent], *,
          refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
          thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
          tolerance_s: float = TOLERANCE_S) -> list[OperatingPoint]:
  """One ``OperatingPoint`` per threshold, in the order given.

  The audio lasts ``len(smoothed) * block_s`` seconds. Ground-truth words
  that are not among the model's keywords cannot be detected: they are left
  out of the occurrences (with a warning naming them) and a detection on
  them counts as a false accept, like any other word the model should
  ignore.
  """
  if smoothed.ndim != 2 or smoothed.shape[1] != len(labels):
    raise ValueError(f'smoothed posteriors of shape {smoothed.shape}, expected '
                     f'[blocks, {len(labels)}] for labels {tuple(labels)}.')
  if not len(smoothed):
    raise ValueError('no audio was streamed: smoothed posteriors of 0 blocks.')
  keywords = {labels[i] for i in detector_lib.keyword_indices(labels)}
  unknown = sorted({e.word for e in events} - keywords)
  if unknown:
    warnings.warn(f'the ground truth has words the model does not spot, left '
                  f'out of the occurrences: {", ".join(unknown)}', stacklevel=2)
  events = [e for e in events if e.word in keywords]
  hours = len(smoothed) * block_s / 3600
  points = []
  for threshold in thresholds:
    detections = detections_at(smoothed, labels, block_s, threshold,
                               refractory_ms)
    result = match(detections, events, tolerance_s)
    points.append(OperatingPoint(float(threshold), len(detections),
                                 result.false_accepts, result.misses,
                                 result.occurrences, hours))
  return points


def evaluate_stream(runner, wav: str, events: Sequence[KeywordEvent], *,
                    smoothing_ms: float = detector_lib.DEFAULT_SMOOTHING_MS,
                    refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
                    progress: bool = True
                    ) -> tuple[list[OperatingPoint], float]:
  """Streams ``wav`` through ``runner`` once and sweeps the thresholds.

  Returns the operating points and the seconds of audio streamed.
  """
  detector = detector_lib.Detector(runner, smoothing_ms=smoothing_ms,
                                   refractory_ms=refractory_ms, record=True)
  for _ in detector_lib.detect_wav(detector, wav, progress=progress):
    pass
  points = sweep(detector.recorded(), runner.labels, detector.block_s, events,
                 refractory_ms=refractory_ms)
  return points, detector.time_s


def frr_at(points: Sequence[OperatingPoint], fa_per_hour: float
           ) -> OperatingPoint | None:
  """The lowest FRR among the thresholds with FA/h <= ``fa_per_hour``.

  Ties go to the fewer false accepts, then to the higher threshold. Returns
  None when no threshold of the sweep stays within the budget (raise the
  highest threshold or use more audio).
  """
  within = [p for p in points if p.fa_per_hour <= fa_per_hour]
  if not within:
    return None
  return min(within, key=lambda p: (p.frr, p.fa_per_hour, -p.threshold))


# -- Reports ---------------------------------------------------------------


def table(points: Sequence[OperatingPoint]) -> str:
  """The sweep as fixed-width text, one threshold per line."""
  lines = [f'{"threshold":>9} {"detections":>10} {"false acc.":>10} '
           f'{"misses":>7} {"FRR":>7} {"FA/h":>8}']
  for p in points:
    lines.append(f'{p.threshold:>9.3f} {p.detections:>10d} '
                 f'{p.false_accepts:>10d} {p.misses:>7d} {p.frr:>7.2%} '
                 f'{p.fa_per_hour:>8.2f}')
  return '\n'.join(lines)


def summary(points: Sequence[OperatingPoint]) -> str:
  """``FRR at 0.5 FA/h: ...`` lines for each of ``FA_BUDGETS``."""
  lines = []
  for budget in FA_BUDGETS:
    best = frr_at(points, budget)
    if best is None:
      lines.append(f'FRR at {budget:g} FA/h: not reached (every threshold '
                   'gives more false accepts)')
    else:
      lines.append(f'FRR at {budget:g} FA/h: {best.frr:.2%} (threshold '
                   f'{best.threshold:g}, {best.fa_per_hour:.2f} FA/h)')
  return '\n'.join(lines)


def plot_det(points: Sequence[OperatingPoint], path: str,
             title: str = 'DET curve') -> None:
  """The DET curve, FRR against FA/h, as a PNG written atomically.

  Points are joined in threshold order (with refractory suppression, very
  low thresholds can miss more, so the curve may turn back). The FA/h axis
  is logarithmic above 0.1 and linear below (symlog), so thresholds without
  false accepts stay on the plot at 0.
  """
  points = sorted(points, key=lambda p: p.threshold)
  fa = np.array([p.fa_per_hour for p in points])
  frr = 100 * np.array([p.frr for p in points])
  fig, ax = plt.subplots(figsize=(6, 4.5))
  ax.plot(fa, frr, '.-', label='thresholds')
  for budget, color in zip(FA_BUDGETS, ('tab:green', 'tab:red')):
    best = frr_at(points, budget)
    text = (f'{best.frr:.1%} at <= {budget:g} FA/h (threshold '
            f'{best.threshold:g})' if best else f'{budget:g} FA/h: not reached')
    ax.axvline(budget, color=color, linestyle=':', linewidth=1, label=text)
    if best is not None:
      ax.plot(best.fa_per_hour, 100 * best.frr, 'o', color=color,
              fillstyle='none')
  ax.set_xscale('symlog', linthresh=0.1)
  ax.set_xlim(left=0)
  ax.set_ylim(0, 100)
  ax.set_xlabel('false accepts per hour')
  ax.set_ylabel('false reject rate (%)')
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize='small')
  with atomic_write(path, 'wb') as file:
    fig.savefig(file, format='png', dpi=110)
  plt.close(fig)


def write_results(points: Sequence[OperatingPoint], out_dir: str,
                  settings: dict[str, object]) -> dict[str, str]:
  """Writes ``streaming_eval.json``, ``streaming_eval.csv`` and ``det_curve.png``.

  Args:
    points: the sweep.
    out_dir: created if missing.
    settings: recorded in the JSON as they are (wav, smoothing_ms, ...).

  Returns:
    The paths written, by kind ('json', 'csv', 'png').
  """
  paths = {kind: os.path.join(out_dir, name) for kind, name in (
      ('json', 'streaming_eval.json'), ('csv', 'streaming_eval.csv'),
      ('png', 'det_curve.png'))}
  frr = {}
  for budget in FA_BUDGETS:
    best = frr_at(points, budget)
    frr[f'{budget:g}'] = best.as_dict() if best else None
  report = {**settings, 'tolerance_s': TOLERANCE_S,
            'frr_at_fa_per_hour': frr, 'points': [p.as_dict() for p in points]}
  write_json(paths['json'], report)
  with atomic_write(paths['csv'], 'w') as file:
    fields = list(points[0].as_dict()) if points else ['threshold']
    writer = csv.DictWriter(file, fields, lineterminator='\n')
    writer.writeheader()
    writer.writerows(p.as_dict() for p in points)
  wav = settings.get('wav')
  plot_det(points, paths['png'], title=f'DET curve: {os.path.basename(wav)}'
           if wav else 'DET curve')
  return paths
