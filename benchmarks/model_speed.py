"""CNN speed: non-streaming forward / forward+backward, and streaming step latency.

    python benchmarks/model_speed.py [--batch 100] [--repeats 10]

Prints examples/s at batch 100 (jitted, float32 params) for each conv
implementation and matmul precision, and the median latency of one jitted
streaming step at batch 1 (20 ms of input), for feature and raw-audio input.
Uses the XLA:CPU flags of kws_jax's tools (YNNPACK convolutions) unless
--xla-defaults.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import optax

from benchmarks.timing import median_seconds
from experiments.configs import cnn as cnn_config
from kws_jax import cli
from kws_jax.models import build_model


def model_for(preprocess: str, implementation: str, compute_dtype: str):
  config = cnn_config.get_config()
  config.model.preprocess = preprocess
  config.model.conv_implementation = implementation
  config.model.compute_dtype = compute_dtype
  model = build_model(config)
  return model, model.init(jax.random.key(0))


def throughput(preprocess, implementation, compute_dtype, batch, repeats):
  model, params = model_for(preprocess, implementation, compute_dtype)
  shape = (batch, model.clip_length, *model.input_shape)
  x = jax.random.normal(jax.random.key(1), shape) * 0.1
  labels = jnp.arange(batch) % model.label_count

  forward = jax.jit(lambda p, x: model.logits(p, x))

  @jax.jit
  def forward_backward(p, x, rng):
    def loss(p):
      logits = model.logits(p, x, train=True, rng=rng)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()
    return jax.value_and_grad(loss)(p)

  rng = jax.random.key(2)
  fwd = median_seconds(lambda: forward(params, x), repeats,
                       block=jax.block_until_ready)
  fwd_bwd = median_seconds(lambda: forward_backward(params, x, rng), repeats,
                           block=jax.block_until_ready)
  return batch / fwd, batch / fwd_bwd


def step_latency_us(preprocess: str, repeats: int) -> float:
  model, params = model_for(preprocess, 'im2col', 'float32')
  state = model.init_state(1)
  frame = jnp.zeros((1, model.block_size, *model.input_shape))
  step = jax.jit(model.step)
  return median_seconds(lambda: step(params, state, frame), repeats,
                        block=jax.block_until_ready) * 1e6


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--xla-defaults', action='store_true',
                      help="keep XLA's CPU defaults instead of the YNNPACK "
                      'flags that kws_jax tools set')
  args = parser.parse_args()
  if not args.xla_defaults:
    cli.configure_xla_cpu()
  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, '
        f'{os.cpu_count()} cores, {platform.processor() or platform.machine()}'
        f', XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  print(f'\nNon-streaming CNN, batch {args.batch} (examples/s, median of '
        f'{args.repeats}):')
  print(f'{"input":<6}{"conv":<8}{"matmul":<10}{"forward":>10}'
        f'{"fwd+bwd":>10}')
  for preprocess in ('mfcc', 'raw'):
    for implementation, dtype in (('im2col', 'float32'), ('im2col', 'bfloat16'),
                                  ('xla', 'float32')):
      fwd, fwd_bwd = throughput(preprocess, implementation, dtype, args.batch,
                                args.repeats)
      print(f'{preprocess:<6}{implementation:<8}{dtype:<10}{fwd:>10.0f}'
            f'{fwd_bwd:>10.0f}', flush=True)
  print('\nStreaming step, batch 1, jitted (median over 1000 steps):')
  for preprocess in ('mfcc', 'raw'):
    unit = '320 samples' if preprocess == 'raw' else '1 feature frame'
    print(f'{preprocess:<6}{step_latency_us(preprocess, 1000):8.0f} us per '
          f'20 ms step ({unit})')


if __name__ == '__main__':
  main()
