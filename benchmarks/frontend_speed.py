"""Frontend throughput: seconds of audio turned into MFCCs per second.

    python benchmarks/frontend_speed.py [--clips 200] [--repeats 15]

Compares kws_jax's jitted MFCC frontend on a batch of 1 s clips (FFT and
DFT-matmul variants; the whole batch at once and in chunks of about
``cli.CPU_CHUNK_FRAMES`` frames, as the training loop computes it on the
CPU) with librosa.feature.mfcc on the same clips, one clip at a time as a
data loader calls it and on the whole batch at once (librosa's rows are
then vectorized numpy). Run through ``make bench`` (glibc's huge pages for
XLA's large buffers, as the tools run) or set GLIBC_TUNABLES yourself.
Without librosa (a GPU image) its rows are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import interleaved_median_seconds
from kws_jax import cli
from kws_jax.frontend import MfccFrontend

LIBROSA_SETTINGS = dict(sr=16000, n_mfcc=20, n_fft=1024, win_length=640,
                        hop_length=320, n_mels=40, fmin=20, fmax=7000,
                        center=False, htk=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--clips', type=int, default=200)
  parser.add_argument('--repeats', type=int, default=15,
                      help='rounds; each times every implementation once')
  args = parser.parse_args()
  cli.configure_xla_cpu()
  rng = np.random.default_rng(0)
  audio = (0.1 * rng.standard_normal((args.clips, 16000))).astype(np.float32)
  seconds_of_audio = args.clips * 1.0
  print(f'{args.clips} clips of 1 s, 16 kHz, 20 MFCCs from 40 mel bins, '
        f'{jax.default_backend()} ({jax.devices()[0].device_kind}), '
        f'{os.cpu_count()} host cores')
  batch = jnp.asarray(audio)
  calls = {}
  for dft in ('fft', 'matmul'):
    for chunk in (0, cli.CPU_CHUNK_FRAMES):
      frontend = MfccFrontend(dft=dft, chunk_frames=chunk)
      features = jax.jit(lambda a, f=frontend: f.apply({}, a))
      how = f'chunks of {chunk} frames' if chunk else 'whole batch'
      calls[f'kws_jax, dft={dft}, {how}'] = (
          lambda f=features: jax.block_until_ready(f(batch)))
  try:
    import librosa  # pylint: disable=g-import-not-at-top
  except ImportError:
    librosa = None
  if librosa is not None:
    def clip_by_clip():
      for clip in audio:
        librosa.feature.mfcc(y=clip, **LIBROSA_SETTINGS)

    calls['librosa.feature.mfcc, clip by clip'] = clip_by_clip
    calls['librosa.feature.mfcc, whole batch'] = (
        lambda: librosa.feature.mfcc(y=audio, **LIBROSA_SETTINGS))
  # Every implementation once per round, so that a slow spell of a shared
  # machine falls on all of them.
  seconds = interleaved_median_seconds(calls, args.repeats)
  rates = {name: seconds_of_audio / value for name, value in seconds.items()}
  reference = rates.get('librosa.feature.mfcc, clip by clip')
  print(f'{"implementation":<46}{"audio s/s":>11}'
        + (f'{"vs librosa clip by clip":>26}' if reference else ''))
  for name, rate in rates.items():
    print(f'{name:<46}{rate:>11.0f}'
          + (f'{rate / reference:>25.1f}x' if reference else ''))


if __name__ == '__main__':
  main()
