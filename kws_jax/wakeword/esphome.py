"""The ESPHome model of a wake-word run: its cutoff and its held-out figures.

`python -m kws_jax.wakeword --esphome` exports the run's best weights as an
ESPHome micro_wake_word model (kws_jax.export.esphome) and chooses its
``probability_cutoff`` the way the float detector's threshold is chosen:
the lowest FRR within the target FA/h on the validation streams, but
measured on the shipped model itself, full-integer under TensorFlow Lite
Micro, with ESPHome's features (the micro frontend streamed over each
whole recording, quantized as ESPHome quantizes them) and ESPHome's rule
(the mean of the last ``sliding_window_size`` uint8 probabilities above the
uint8 cutoff). The evaluation streams then give the same model's FRR and
FA/h at that cutoff.

The one part of ESPHome's detector modelled rather than copied is what
follows a detection: ESPHome zeroes its window and waits about a second;
here a detection needs the mean to rise past the cutoff again and the same
refractory time as the float detector (``refractory_ms``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from kws_jax.detect import detector as detector_lib
from kws_jax.detect import metrics
from kws_jax.export import esphome as esphome_export
from kws_jax.micro_frontend import MicroFrontend
from kws_jax.wakeword import streams as streams_lib

SEGMENT_FRAMES = 6000  # one minute of 10 ms frames per frontend call
CUTOFFS = tuple(range(255))  # every uint8 cutoff ESPHome can hold


@functools.partial(jax.jit, static_argnums=0)
def _frontend_segment(frontend: MicroFrontend, state: Any, audio: jax.Array):
  return frontend.step({}, state, audio)


def stream_features(frontend: MicroFrontend, audio: np.ndarray) -> np.ndarray:
  """int8 ESPHome features ``[frames, 40]`` of a whole recording.

  The frontend steps over the recording in one-minute segments, its state
  (noise estimate, PCAN) carried across, as on the device.
  """
  stride = frontend.stride_samples
  frames = len(audio) // stride
  length = SEGMENT_FRAMES * stride
  padded = np.zeros(-(-frames * stride // length) * length, np.float32)
  padded[:frames * stride] = audio[:frames * stride]
  state = frontend.init_state(1)
  out = []
  for start in range(0, len(padded), length):
    state, features = _frontend_segment(
        frontend, state, jnp.asarray(padded[None, start:start + length]))
    out.append(np.asarray(features[0]))
  features = np.concatenate(out)[:frames]
  return esphome_export.esphome_features(features, frontend.out_scale)


def stream_probabilities(flatbuffer: bytes, frontend: MicroFrontend,
                         streams: Sequence[streams_lib.Stream],
                         progress: bool = True) -> list[np.ndarray]:
  """uint8 probabilities of every step of each stream, the model under TFLM
  from its initial state at each stream's start."""
  model = esphome_export.ProbabilityStream(flatbuffer, 'tflm')
  results = []
  for stream in tqdm(streams, desc='ESPHome model under TFLM', unit='stream',
                     disable=not progress):
    model.reset()
    results.append(model.probabilities(stream_features(frontend,
                                                       stream.audio)))
  return results


def _threshold(cutoff: int, window: int) -> float:
  """The threshold on ``sum / (255 window)`` that fires exactly when the sum
  of the window exceeds ``cutoff * window`` (ESPHome's '>' on integers)."""
  return (cutoff * window + 0.5) / (255 * window)


def sweep(probabilities: Sequence[np.ndarray],
          streams: Sequence[streams_lib.Stream], wake_word: str,
          step_s: float, window: int, *,
          refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
          cutoffs: Sequence[int] = CUTOFFS) -> list[metrics.OperatingPoint]:
  """One operating point per uint8 cutoff (``threshold`` holds the cutoff),
  summed over the streams."""
  posteriors = []
  for stream, steps in zip(streams, probabilities):
    mean = esphome_export.window_sums(steps, window) / (255.0 * window)
    posteriors.append(streams_lib.Posteriors(
        stream, np.stack([1.0 - mean, mean], axis=1), step_s))
  points = streams_lib.sweep(
      posteriors, ['_unknown_', wake_word], refractory_ms=refractory_ms,
      thresholds=[_threshold(c, window) for c in cutoffs])
  return [metrics.OperatingPoint(float(c), p.detections, p.false_accepts,
                                 p.misses, p.occurrences, p.hours)
          for c, p in zip(cutoffs, points)]


def choose_detection(flatbuffer: bytes, frontend: MicroFrontend,
                     streams: Sequence[streams_lib.Stream], wake_word: str,
                     step_s: float, window: int, target_fa_per_hour: float,
                     *, refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
                     progress: bool = True
                     ) -> tuple[esphome_export.Detection, dict[str, Any]]:
  """The cutoff of the lowest FRR within ``target_fa_per_hour`` on
  ``streams`` (the validation streams), and the sweep it came from. When no
  cutoff gets there, the highest one (254), said so."""
  probabilities = stream_probabilities(flatbuffer, frontend, streams, progress)
  points = sweep(probabilities, streams, wake_word, step_s, window,
                 refractory_ms=refractory_ms)
  best = metrics.frr_at(points, target_fa_per_hour)
  hours = points[0].hours
  if best is None:
    cutoff = CUTOFFS[-1]
    source = (f'the highest cutoff: none reaches {target_fa_per_hour:g} FA/h '
              f'on {hours:.2f} h of validation streams (this model under '
              'TFLM)')
  else:
    cutoff = int(best.threshold)
    source = (f'swept on {hours:.2f} h of validation streams, this model '
              f'under TFLM: FRR {best.frr:.1%} at {best.fa_per_hour:.2f} FA/h '
              f'(target {target_fa_per_hour:g} FA/h)')
  detection = esphome_export.Detection(cutoff, window, source)
  return detection, {'points': [p.as_dict() for p in points],
                     'hours': hours, 'streams': [s.name for s in streams]}


def evaluate(flatbuffer: bytes, frontend: MicroFrontend,
             streams: Sequence[streams_lib.Stream], wake_word: str,
             step_s: float, detection: esphome_export.Detection, *,
             refractory_ms: float = detector_lib.DEFAULT_REFRACTORY_MS,
             plot_path: str | None = None, title: str = 'ESPHome model',
             progress: bool = True) -> dict[str, Any]:
  """FRR and FA/h of the ESPHome model at ``detection`` on held-out streams,
  and its best FRR at the recipe's budgets; its DET curve (over the uint8
  cutoffs) at ``plot_path``."""
  from kws_jax.wakeword import recipe as recipe_lib  # pylint: disable=g-import-not-at-top
  probabilities = stream_probabilities(flatbuffer, frontend, streams, progress)
  points = sweep(probabilities, streams, wake_word, step_s,
                 detection.sliding_window_size, refractory_ms=refractory_ms)
  chosen = points[detection.cutoff]
  if plot_path is not None:
    metrics.plot_det(points, plot_path, title=title)
  return {'hours': chosen.hours, 'keywords': chosen.occurrences,
          'at_cutoff': chosen.as_dict(),
          'frr_at_fa_per_hour': streams_lib.frr_at_budgets(
              points, recipe_lib.BUDGETS)}
