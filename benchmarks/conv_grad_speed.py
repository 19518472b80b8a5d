"""Per-layer convolution gradients of the paper CNN: autodiff against ours.

    python benchmarks/conv_grad_speed.py [--batch 100] [--repeats 15]

For each convolution of the paper CNN (batch 100, MFCC input [49, 20]) times
the forward ``lax`` convolution, its input gradient ``dx`` and its kernel
gradient ``dw`` as XLA's autodiff derives them and as
``kws_jax.layers.lax_conv.conv_valid`` computes them, under the XLA:CPU
flags kws_jax's tools set (YNNPACK convolutions). Milliseconds, median of
``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from kws_jax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

cli.configure_xla_cpu()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks.timing import median_seconds  # pylint: disable=g-import-not-at-top,wrong-import-position
from kws_jax.layers import lax_conv  # pylint: disable=g-import-not-at-top,wrong-import-position

# (time, feature, channels, filters, kernel time, kernel feature, dilation
# in time) of the paper CNN on [49, 20] MFCCs.
PAPER_CNN = ((49, 20, 1, 64, 3, 3, 1), (47, 18, 64, 64, 5, 3, 1),
             (43, 16, 64, 64, 5, 3, 2), (35, 14, 64, 64, 5, 3, 1),
             (31, 12, 64, 128, 5, 2, 2), (23, 11, 128, 64, 5, 1, 1),
             (19, 11, 64, 128, 10, 1, 2))


def autodiff_conv(x, kernel, dilation):
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), 'VALID', rhs_dilation=dilation,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def ours_conv(x, kernel, dilation):
  return lax_conv.conv_valid(x, kernel, dilation, (1, 1))


def gradients(conv, dilation):
  """Jitted ``(x, w, g) -> dx`` and ``(x, w, g) -> dw`` of ``conv``."""
  dx = jax.jit(lambda x, w, g: jax.vjp(
      lambda x: conv(x, w, dilation), x)[1](g)[0])
  dw = jax.jit(lambda x, w, g: jax.vjp(
      lambda w: conv(x, w, dilation), w)[1](g)[0])
  return dx, dw


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=15)
  args = parser.parse_args()
  rng = np.random.default_rng(0)

  def ms(fn, *operands):
    return 1e3 * median_seconds(lambda: fn(*operands), args.repeats,
                                warmup=2, block=jax.block_until_ready)

  print(f'Paper CNN convolutions, batch {args.batch}, {os.cpu_count()} '
        f'cores, ms (median of {args.repeats})')
  columns = ('forward', 'dx autodiff', 'dx ours', 'dw autodiff', 'dw ours')
  print(f'{"layer":<26}' + ''.join(f'{c:>13}' for c in columns))
  totals = np.zeros(len(columns))
  for time, features, channels, filters, k_time, k_feature, dt in PAPER_CNN:
    dilation = (dt, 1)
    x = rng.standard_normal((args.batch, time, features, channels),
                            np.float32)
    kernel = 0.1 * rng.standard_normal((k_time, k_feature, channels,
                                        filters), np.float32)
    forward = jax.jit(lambda x, w, d=dilation: autodiff_conv(x, w, d))
    grad = rng.standard_normal(forward(x, kernel).shape, np.float32)
    dx_auto, dw_auto = gradients(autodiff_conv, dilation)
    dx_ours, dw_ours = gradients(ours_conv, dilation)
    for ours, auto in ((dx_ours, dx_auto), (dw_ours, dw_auto)):
      np.testing.assert_allclose(ours(x, kernel, grad), auto(x, kernel, grad),
                                 rtol=1e-3, atol=1e-2)
    row = [ms(forward, x, kernel),
           # The first layer's input gradient is not needed in training.
           np.nan if channels == 1 else ms(dx_auto, x, kernel, grad),
           np.nan if channels == 1 else ms(dx_ours, x, kernel, grad),
           ms(dw_auto, x, kernel, grad), ms(dw_ours, x, kernel, grad)]
    totals += np.nan_to_num(row)
    name = (f'{time}x{features}x{channels} k{k_time}x{k_feature} '
            f'd{dt} -> {filters}')
    print(f'{name:<26}' + ''.join(
        f'{"-" if np.isnan(v) else f"{v:.1f}":>13}' for v in row))
  print(f'{"sum":<26}' + ''.join(f'{v:>13.1f}' for v in totals))


if __name__ == '__main__':
  main()
