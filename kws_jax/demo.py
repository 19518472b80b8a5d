"""The main job (until training lands): the paper CNN, streamed and not.

    python -m kws_jax.demo [--out runs/demo] [--seconds 3]

Builds the paper's CNN on raw audio with random weights, runs it on a
synthetic signal both ways — non-streaming on every 1 s window, and streaming
20 ms per step from a zero state — checks that the two agree, times one
streaming step and plots both logit tracks to ``OUT/streaming_demo.png``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax import config as kws_config
from kws_jax.layers import scan_steps
from kws_jax.models import build_model, cnn
from kws_jax.summary import model_summary


def synthetic_audio(seconds: float, sample_rate: int = 16000) -> np.ndarray:
  """Gliding tones in bursts over low noise, ``[1, samples]`` float32."""
  rng = np.random.default_rng(0)
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  pitch = 200 + 150 * np.sin(2 * np.pi * 0.7 * t)
  tone = np.sin(2 * np.pi * np.cumsum(pitch) / sample_rate)
  bursts = np.clip(np.sin(2 * np.pi * 1.5 * t), 0, None)
  audio = 0.3 * tone * bursts + 0.01 * rng.standard_normal(t.size)
  return audio[None].astype(np.float32)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='runs/demo')
  parser.add_argument('--seconds', type=float, default=3.0)
  args = parser.parse_args()

  config = kws_config.default_config()
  config.model = cnn.default_config()
  model = build_model(config)
  params = model.init(jax.random.key(0))
  print(model_summary(model))

  audio = jnp.asarray(synthetic_audio(args.seconds))
  steps = audio.shape[1] // model.block_size
  audio = audio[:, :steps * model.block_size]
  windows = jax.jit(model.apply)(params, audio)  # every 1 s window
  _, streamed = jax.jit(lambda p, a: scan_steps(model, p, a))(params, audio)
  streamed = streamed[:, model.lookback:]
  diff = float(jnp.max(jnp.abs(streamed - windows)))
  print(f'{windows.shape[1]} windows of 1 s over {args.seconds:g} s: '
        f'streaming vs non-streaming max |diff| = {diff:.2e}')

  step = jax.jit(model.step)
  state = model.init_state(1)
  block = audio[:, :model.block_size]
  jax.block_until_ready(step(params, state, block))
  times = []
  for _ in range(500):
    start = time.perf_counter()
    state, logits = step(params, state, block)
    jax.block_until_ready(logits)
    times.append(time.perf_counter() - start)
  print(f'streaming step (20 ms of audio, batch 1): median '
        f'{statistics.median(times) * 1e6:.0f} us')

  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'streaming_demo.png')
  _plot(np.asarray(windows[0]), np.asarray(streamed[0]), path)
  print(f'plot: {path}')
  if diff > 1e-4:
    raise SystemExit(f'streaming and non-streaming differ by {diff:.2e}')


def _plot(windows: np.ndarray, streamed: np.ndarray, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  ends = 1.0 + 0.02 * np.arange(windows.shape[0])
  fig, ax = plt.subplots(figsize=(8, 4))
  for label in range(windows.shape[1]):
    line, = ax.plot(ends, windows[:, label], lw=2, alpha=0.4)
    ax.plot(ends, streamed[:, label], ls='--', lw=1, color=line.get_color())
  ax.set_xlabel('end of the 1 s window (s)')
  ax.set_ylabel('logit (random weights)')
  ax.set_title('Paper CNN: streaming (dashed) equals non-streaming (solid)')
  fig.tight_layout()
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)


if __name__ == '__main__':
  main()
