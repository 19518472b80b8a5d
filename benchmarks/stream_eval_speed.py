"""Speed of batched streaming over long audio (models.streaming).

    python benchmarks/stream_eval_speed.py [--minutes 2] [--streams 30]
        [--stream-minutes 1] [--batch-size 16] [--repeats 1]

Prints the device, then for the paper CNN on raw audio (experiments/configs/
cnn.py), the speech-embedding dense head (embedding_dnn.py) and the paper
GRU on raw audio (gru.py), random weights (speed does not depend on them),
the seconds of audio streamed per second by ``stream_logits_many`` (lax.scan
over the step, segments of --segment-steps steps, --batch-size at a time) on
noise: (a) one recording of --minutes, (b) --streams recordings of
--stream-minutes each, as FA/h evaluation and hard-negative mining stream
them. The CNN and the dense head pack the segments of all recordings into
batches; the GRU, whose state never forgets, streams one recording per
batch row (so one recording runs at batch 1). The same command serves a
GPU: JAX picks the device.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from benchmarks.timing import median_seconds
from experiments.configs import cnn, embedding_dnn, gru
from kws_jax import cli
from kws_jax.models import build_model, streaming

SAMPLE_RATE = 16000


def on_raw_audio(config: ml_collections.ConfigDict
                 ) -> ml_collections.ConfigDict:
  """``config`` with the frontend inside the model (it streams audio)."""
  config.model.preprocess = 'raw'
  return config


def noise(rng: np.random.Generator, minutes: float) -> np.ndarray:
  """Quiet white noise ``[minutes * 60 * 16000]``."""
  samples = int(minutes * 60 * SAMPLE_RATE)
  return (0.05 * rng.standard_normal(samples)).astype(np.float32)


def audio_per_second(model, params, recordings: list[np.ndarray],
                     args: argparse.Namespace) -> float:
  """Seconds of audio streamed per second of wall time (median)."""
  seconds = median_seconds(
      lambda: streaming.stream_logits_many(
          model, params, recordings, segment_steps=args.segment_steps,
          batch_size=args.batch_size), args.repeats)
  return sum(map(len, recordings)) / SAMPLE_RATE / seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--minutes', type=float, default=2.0,
                      help='length of the one long recording')
  parser.add_argument('--streams', type=int, default=30)
  parser.add_argument('--stream-minutes', type=float, default=1.0)
  parser.add_argument('--segment-steps', type=int, default=1024)
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--repeats', type=int, default=1,
                      help='timed runs after one untimed (compiling) run')
  args = parser.parse_args()
  cli.configure_xla_cpu()
  device = jax.devices()[0]
  print(f'{device.platform} ({device.device_kind}), {jax.device_count()} '
        f'device(s); segments of {args.segment_steps} steps, batch '
        f'{args.batch_size}', flush=True)
  rng = np.random.default_rng(0)
  cases = {
      f'one {args.minutes:g}-min recording': [noise(rng, args.minutes)],
      f'{args.streams} streams of {args.stream_minutes:g} min': [
          noise(rng, args.stream_minutes) for _ in range(args.streams)],
  }
  for name, config in (('cnn (raw audio)', on_raw_audio(cnn.get_config())),
                       ('embedding_dnn', embedding_dnn.get_config()),
                       ('gru (raw audio)', on_raw_audio(gru.get_config()))):
    model = build_model(config)
    params = model.init(jax.random.key(0))
    for case, recordings in cases.items():
      speed = audio_per_second(model, params, recordings, args)
      print(f'{name:16} {case:24} {speed:9,.0f} s of audio per second '
            f'({3600 / speed:6.1f} s per hour; '
            f'{streaming.block_samples(model)}-sample steps)', flush=True)


if __name__ == '__main__':
  main()
