"""Speed of the speech embedding: frontend throughput and streaming latency.

    python benchmarks/embedding_speed.py [--clips 100] [--repeats 300]

Prints, on this machine:

* the jitted full-window frontend (audio -> embeddings) on a batch of 2 s
  clips, in seconds of audio per second, with the FFT and DFT-matmul spectra
  (what training and feature extraction use);
* the streaming step of ``experiments/configs/embedding_dnn.py`` (random head
  weights; speed does not depend on them): jitted JAX at batch 1, and TFLite
  float, dynamic-range and int8 (head only, see SpeechEmbedding.float_scopes)
  on 1 thread, ``invoke`` alone and with the states copied back, per 80 ms
  step, with file sizes and multiply-accumulates per step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from benchmarks.export_speed import convert_forms, median_us, step_with_state_io
from benchmarks.timing import median_seconds
from experiments.configs import embedding_dnn
from kws_jax import cli
from kws_jax.export import forms
from kws_jax.export.pipeline import export_models
from kws_jax.speech_embedding import SpeechEmbedding
from kws_jax.summary import step_macs


def frontend_rates(clips: int, repeats: int) -> dict[str, float]:
  rng = np.random.default_rng(0)
  audio = jnp.asarray((0.1 * rng.standard_normal((clips, 32000))
                       ).astype(np.float32))
  rates = {}
  for dft in ('fft', 'matmul'):
    frontend = SpeechEmbedding(dft=dft)
    embed = jax.jit(lambda a, f=frontend: f.apply({}, a))
    seconds = median_seconds(lambda: embed(audio), repeats,
                             block=jax.block_until_ready)
    rates[dft] = 2.0 * clips / seconds
  return rates


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--clips', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=300)
  args = parser.parse_args()
  cli.configure_xla_cpu()
  rates = frontend_rates(args.clips, 5)

  config = embedding_dnn.get_config()
  model, quant_model = export_models(config)
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(1)
  calibration = (0.1 * rng.standard_normal((4, model.clip_length))
                 ).astype(np.float32)
  block = np.zeros((1, model.block_size), np.float32)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    paths = convert_forms(model, quant_model, params, calibration, tmp,
                          ('stream_state_external',))
    for (_, quantization), path in paths.items():
      rows.append((quantization, *step_with_state_io(path, block,
                                                     args.repeats),
                   os.path.getsize(path)))

  step = jax.jit(forms.streaming_fn(model, params))
  states = forms.zero_states(model)
  jax_us = median_us(lambda: jax.block_until_ready(step(block, *states)),
                     args.repeats)
  macs = step_macs(model)
  print(f'speech embedding, {os.cpu_count()} cores')
  print(f'full-window frontend, jit, batch {args.clips} x 2 s: '
        + ', '.join(f'dft={k} {v:,.0f} s of audio/s' for k, v in rates.items()))
  print('embedding_dnn streaming step, us per 80 ms step (TFLite 1 thread):')
  print(f'{"TFLite":<10}{"invoke":>8}{"+ state I/O":>13}{"file":>12}')
  for quantization, invoke_us, io_us, size in rows:
    print(f'{quantization:<10}{invoke_us:>8.0f}{io_us:>13.0f}'
          f'{size / 1024:>9.0f} KiB')
  print(f'JAX jitted step (batch 1): {jax_us:.0f} us')
  print(f'multiply-accumulates per step: {sum(macs.values()):,} '
        f'(frontend {macs.get("frontend", 0):,})')


if __name__ == '__main__':
  main()
