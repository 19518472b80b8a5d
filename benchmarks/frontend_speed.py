"""Frontend throughput: seconds of audio turned into MFCCs per second.

    python benchmarks/frontend_speed.py [--clips 200] [--repeats 5]

Compares kws_jax's jitted frontend (FFT and DFT-matmul variants) on batches of
1 s clips with librosa.feature.mfcc on the same clips, one clip at a time as
a data loader would call it, on the same machine.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import librosa
import numpy as np

from benchmarks.timing import median_seconds
from kws_jax.frontend import MfccFrontend


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--clips', type=int, default=200)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  audio = (0.1 * rng.standard_normal((args.clips, 16000))).astype(np.float32)
  seconds_of_audio = args.clips * 1.0
  print(f'{args.clips} clips of 1 s, 16 kHz, 20 MFCCs from 40 mel bins, '
        f'{os.cpu_count()} cores')
  rates = {}
  for dft in ('fft', 'matmul'):
    frontend = MfccFrontend(dft=dft)
    features = jax.jit(lambda a, f=frontend: f.apply({}, a))
    batch = jnp.asarray(audio)
    seconds = median_seconds(
        lambda: jax.block_until_ready(features(batch)), args.repeats)
    rates[f'kws_jax, jit, batch {args.clips}, dft={dft}'] = (
        seconds_of_audio / seconds)

  def librosa_mfcc():
    for clip in audio:
      librosa.feature.mfcc(y=clip, sr=16000, n_mfcc=20, n_fft=1024,
                           win_length=640, hop_length=320, n_mels=40, fmin=20,
                           fmax=7000, center=False, htk=True)

  seconds = median_seconds(librosa_mfcc, max(1, args.repeats // 2))
  librosa_rate = seconds_of_audio / seconds
  rates['librosa.feature.mfcc, clip by clip'] = librosa_rate
  print(f'{"implementation":<44}{"audio s/s":>11}{"vs librosa":>12}')
  for name, rate in rates.items():
    print(f'{name:<44}{rate:>11.0f}{rate / librosa_rate:>11.1f}x')


if __name__ == '__main__':
  main()
