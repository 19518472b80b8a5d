"""Max and average pooling over time (and features), streamed like a convolution."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.window import PADDINGS, TimeWindow

Array = jax.Array

KINDS = ('max', 'average')


@dataclasses.dataclass(frozen=True)
class Pool2D(base.Layer):
  """Pooling over ``(time, feature)`` of ``[batch, time, feature, channels]``.

  As Keras' ``MaxPooling2D`` / ``AveragePooling2D`` with ``padding='valid'``
  after the time padding of ``time_padding`` (``layers.window``); causal and
  semicausal zeros count in an average, as they do in kws_streaming. Frames
  may also be vectors ``[batch, time, feature]`` (pooled as one channel).

  Streaming: a step takes ``n`` blocks of ``strides[0]`` frames and returns
  ``n`` frames, keeping the last input frames the next window reads (as
  ``Conv2D``). A window over the whole clip (``pool_size[0]`` = its frames,
  stride 1) is kws_streaming's streaming global pooling.
  """

  name: str
  pool_size: tuple[int, int]
  strides: tuple[int, int] | None = None  # default: pool_size, as Keras
  kind: str = 'max'
  time_padding: str = 'valid'

  def __post_init__(self):
    for field in ('pool_size', 'strides'):
      value = getattr(self, field)
      if field == 'strides' and value is None:
        continue
      if (not isinstance(value, tuple) or len(value) != 2 or
          not all(isinstance(v, int) and v >= 1 for v in value)):
        raise ValueError(
            f'{self.name}: {field} is {value!r}, expected a pair of positive '
            'ints (time, feature).')
    base.check_choice(self.name, 'kind', self.kind, KINDS)
    base.check_choice(self.name, 'time_padding', self.time_padding, PADDINGS)

  @property
  def _strides(self) -> tuple[int, int]:
    return self.strides or self.pool_size

  @property
  def window(self) -> TimeWindow:
    return TimeWindow(self.pool_size[0], self._strides[0], self.time_padding)

  @property
  def pads_past(self) -> bool:
    return self.window.left_pad > 0

  @property
  def block_size(self) -> int:
    return self._strides[0]

  @property
  def lookback(self) -> int:
    return self.window.lookback

  @property
  def receptive_field(self) -> int:
    return self.pool_size[0]

  def output_length(self, length: int) -> int:
    out = self.window.output_length(length)
    if out < 1:
      raise ValueError(
          f'{self.name}: pool of {self.pool_size[0]} frames in time, but only '
          f'{length} remain; use a smaller pool or a longer clip.')
    return out

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) not in (1, 2):
      raise ValueError(
          f'{self.name}: frames have shape {tuple(in_shape)}, expected '
          '(feature,) or (feature, channels).')
    features = (in_shape[0] - self.pool_size[1]) // self._strides[1] + 1
    if features < 1:
      raise ValueError(
          f'{self.name}: pool of {self.pool_size[1]} features, but frames '
          f'have {in_shape[0]}.')
    return (features, *in_shape[1:])

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    self.output_length(x.shape[1])
    return self._pool(self.window.full_window(x))

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return self.window.init_state(batch_size, tuple(in_shape), dtype)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    del params
    base.check_blocks(self.name, frame, self.block_size, 'frame')
    state, window_input = self.window.stream(state, frame)
    return state, self._pool(window_input)

  def _pool(self, x: Array) -> Array:
    """Valid pooling of ``x [batch, time, feature(, channels)]``."""
    self.output_shape(x.shape[2:])
    if x.ndim == 3:
      # Vector frames pool as one channel: TFLite has 4-D pools only (a 3-D
      # reduce_window fails int8 conversion).
      return self._pool(x[..., None])[..., 0]
    window = (1, *self.pool_size) + (1,) * (x.ndim - 3)
    strides = (1, *self._strides) + (1,) * (x.ndim - 3)
    if self.kind == 'max':
      return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides,
                                   'VALID')
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides,
                                  'VALID')
    return total / (self.pool_size[0] * self.pool_size[1])
