"""Google's speech embedding network as a pure JAX function of its weights.

The network (as openWakeWord 0.4.0 packages it) maps 76 normalized log-mel
frames ``[76, 32]`` to one 96-dimensional embedding. Its convolutions are
"valid" in time and its three time poolings halve the time axis, so over a
longer sequence ``[T, 32]`` the same ops emit one embedding per 8 frames,
embedding ``k`` depending exactly on frames ``[8k, 8k + 76)``: the poolings
see the same pairs of rows as they do in each 76-frame window (every window
start is a multiple of 8). ``embeddings(weights, mel)`` therefore computes all
windows of a sequence at once, about 9x less work than running each window.

Layers: a 3x3 conv (mel padded by 1) followed by ReLU and BatchNorm, then 18
convs alternating 1x3 (mel padded by 1) and 3x1 (valid), each followed by
LeakyReLU(0.2) and ``max(x, -0.4)``, max pooling after convs 2, 6, 10, 14 and
18, and a final 3x1 conv.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

WINDOW_FRAMES = 76  # mel frames per embedding
HOP_FRAMES = 8  # mel frames between embeddings
MEL_BINS = 32
EMBEDDING_SIZE = 96
BATCH_NORM_EPSILON = 1e-3
# conv index -> (time, mel) pooling after its activation.
POOLING = {2: (2, 2), 6: (1, 2), 10: (2, 2), 14: (1, 2), 18: (2, 2)}
NUM_CONVS = 20


def num_embeddings(frames: int) -> int:
  """Embeddings of a ``frames``-long mel sequence (0 if shorter than a window)."""
  return 0 if frames < WINDOW_FRAMES else (frames - WINDOW_FRAMES) // HOP_FRAMES + 1


def _conv(x: Array, kernel: np.ndarray, mel_padding: int) -> Array:
  kernel = jnp.asarray(kernel, x.dtype)
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), ((0, 0), (mel_padding, mel_padding)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _activation(x: Array) -> Array:
  return jnp.maximum(jnp.where(x > 0, x, 0.2 * x), -0.4)


def _max_pool(x: Array, time: int, mel: int) -> Array:
  """Non-overlapping max pooling as maxima of strided slices (TFLite MAXIMUM)."""
  if time == 2:
    even = x.shape[1] // 2 * 2
    x = jnp.maximum(x[:, 0:even:2], x[:, 1:even:2])
  if mel == 2:
    even = x.shape[2] // 2 * 2
    x = jnp.maximum(x[:, :, 0:even:2], x[:, :, 1:even:2])
  return x


def batch_norm_affine(weights: Mapping[str, np.ndarray]
                      ) -> tuple[np.ndarray, np.ndarray]:
  """The first block's BatchNorm as ``x * scale + offset`` (float64 folded)."""
  scale = weights['batch_norm0/scale'].astype(np.float64) / np.sqrt(
      weights['batch_norm0/variance'].astype(np.float64) + BATCH_NORM_EPSILON)
  offset = (weights['batch_norm0/offset'] -
            weights['batch_norm0/mean'] * scale)
  return scale.astype(np.float32), offset.astype(np.float32)


def embeddings(weights: Mapping[str, np.ndarray], mel: Array) -> Array:
  """Normalized log-mel ``[batch, T, 32]`` -> ``[batch, num_embeddings(T), 96]``.

  Embedding ``k`` is the network's output on frames ``[8k, 8k + 76)``.
  """
  if mel.ndim != 3 or mel.shape[2] != MEL_BINS or mel.shape[1] < WINDOW_FRAMES:
    raise ValueError(
        f'speech embedding: mel has shape {tuple(mel.shape)}, expected '
        f'[batch, >= {WINDOW_FRAMES} frames, {MEL_BINS} bins].')
  x = mel[..., None]
  scale, offset = batch_norm_affine(weights)
  with jax.named_scope('conv0'):
    x = jax.nn.relu(_conv(x, weights['conv0/kernel'], 1))
    x = _activation(x * jnp.asarray(scale, x.dtype) +
                    jnp.asarray(offset, x.dtype))
  for index in range(1, NUM_CONVS - 1):
    kernel = weights[f'conv{index}/kernel']
    with jax.named_scope(f'conv{index}'):
      x = _conv(x, kernel, 1 if kernel.shape[1] == 3 else 0)
      x = _activation(x + jnp.asarray(weights[f'conv{index}/bias'], x.dtype))
      if index in POOLING:
        x = _max_pool(x, *POOLING[index])
  with jax.named_scope(f'conv{NUM_CONVS - 1}'):
    x = _conv(x, weights[f'conv{NUM_CONVS - 1}/kernel'], 0)
  return x[:, :, 0, :]  # the mel axis is 1 wide here


def window_macs(weights: Mapping[str, np.ndarray]) -> int:
  """Multiply-accumulates of the network on one 76-frame window."""
  time, mel = WINDOW_FRAMES, MEL_BINS + 2
  total = 0
  for index in range(NUM_CONVS):
    kt, km, cin, cout = weights[f'conv{index}/kernel'].shape
    if index > 0 and km == 3:
      mel += 2
    time, mel = time - kt + 1, mel - km + 1
    total += time * mel * kt * km * cin * cout
    if index in POOLING:
      pool_t, pool_m = POOLING[index]
      time, mel = time // pool_t, mel // pool_m
  return total
