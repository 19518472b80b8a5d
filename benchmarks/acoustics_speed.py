"""How fast real-world acoustics are on this machine (one process).

    python benchmarks/acoustics_speed.py [--rooms 20]

1. Simulates rooms (pyroomacoustics image sources, RT60 0.1-1 s): rooms/s.
2. Puts a training batch of 100 clips of 2 s through `Acoustics` (every step
   at its default probability): clips/s, against the appetite of the
   speech-embedding head's train step (batch 100 at 3-5 steps/s).
3. Renders a 10-minute stream (30 s per room): seconds of audio per second.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from benchmarks.timing import median_seconds
from kws_jax.data import acoustics, render_acoustics

BATCH, CLIP = 100, 32000
APPETITE = (300, 500)  # clips/s: batch 100 at 3-5 steps/s


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rooms', type=int, default=20)
  args = parser.parse_args()
  start = time.perf_counter()
  rooms = acoustics.make_rooms(args.rooms, seed=123, progress=False)
  room_rate = args.rooms / (time.perf_counter() - start)
  noise = render_acoustics.evaluation_noise(seed=0)
  rng = np.random.default_rng(0)
  clips = (0.1 * rng.standard_normal((BATCH, CLIP))).astype(np.float32)
  silence = rng.uniform(size=BATCH) < 0.1
  batch_s = median_seconds(
      lambda: acoustics.Acoustics().augment(clips, silence, noise, rng, rooms),
      repeats=5)
  stream = (0.1 * rng.standard_normal(16000 * 600)).astype(np.float32)
  stream_s = median_seconds(
      lambda: acoustics.apply_to_stream(stream, acoustics.Acoustics(), rng,
                                        rooms, noise), repeats=3)
  print(f'room simulation: {room_rate:.1f} rooms/s (RT60 0.1-1 s, responses '
        'cut to 1 s)')
  print(f'training batch ({BATCH} x {CLIP / 16000:g} s): {batch_s * 1e3:.0f} ms'
        f' = {BATCH / batch_s:,.0f} clips/s per thread (the embedding head '
        f'takes {APPETITE[0]}-{APPETITE[1]} clips/s)')
  print(f'stream rendering: {600 / stream_s:,.0f} s of audio per second')


if __name__ == '__main__':
  main()
