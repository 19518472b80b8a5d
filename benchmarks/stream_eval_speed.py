"""Speed of batched streaming over long audio (models.streaming.stream_logits).

    python benchmarks/stream_eval_speed.py [--minutes 10] [--repeats 3]

Prints, for the speech-embedding dense head (experiments/configs/
embedding_dnn.py) and the paper CNN on raw audio (experiments/configs/cnn.py),
random weights (speed does not depend on them), the seconds of audio
streamed per second by ``stream_logits`` (lax.scan over the step, segments
of 1,024 steps, 16 at a time) on noise: what hard-negative mining and
FA/h evaluation cost per hour of audio.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from benchmarks.timing import median_seconds
from experiments.configs import cnn, embedding_dnn
from kws_jax import cli
from kws_jax.models import build_model, streaming


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--minutes', type=float, default=10.0)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  cli.configure_xla_cpu()
  audio = (0.05 * np.random.default_rng(0).standard_normal(
      int(args.minutes * 60 * 16000))).astype(np.float32)
  raw_cnn = cnn.get_config()
  raw_cnn.model.preprocess = 'raw'
  for name, config in (('embedding_dnn', embedding_dnn.get_config()),
                       ('cnn (raw audio)', raw_cnn)):
    model = build_model(config)
    params = model.init(jax.random.key(0))
    seconds = median_seconds(
        lambda: streaming.stream_logits(model, params, audio),
        args.repeats)
    print(f'{name}: {args.minutes * 60 / seconds:,.0f} s of audio per second '
          f'({3600 / (args.minutes * 60 / seconds):,.0f} s per hour of audio; '
          f'{streaming.block_samples(model)}-sample steps)', flush=True)


if __name__ == '__main__':
  main()
