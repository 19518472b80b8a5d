"""Frame-wise layers (Dense, Activation, Dropout, ExpandDims, FeaturePool) and Flatten.

All but Flatten look at one frame at a time: they are stateless and their
step is their full-window form applied to the frame. Flatten concatenates a
fixed window of frames, streamed through a buffer of that many frames.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.activations import get_activation
from kws_jax.layers.window import TimeWindow

Array = jax.Array


def cast_operands(x: Array, w: Array, compute_dtype: str | None
                  ) -> tuple[Array, Array]:
  """Rounds both operands to ``compute_dtype`` (no-op when it is None)."""
  if compute_dtype is None:
    return x, w
  return x.astype(compute_dtype), w.astype(compute_dtype)


def matmul(x: Array, w: Array, compute_dtype: str | None) -> Array:
  """``x @ w`` over the last axis of ``x``, optionally with low-precision inputs.

  With ``compute_dtype='bfloat16'`` both operands are rounded to bfloat16 and
  the products accumulate in ``x.dtype`` (float32): about 2x faster on CPU.
  """
  lhs, rhs = cast_operands(x, w, compute_dtype)
  return jnp.matmul(lhs, rhs, preferred_element_type=x.dtype)


@dataclasses.dataclass(frozen=True)
class Dense(base.Layer):
  """Fully connected layer on the last axis: ``[..., in]`` -> ``[..., units]``.

  Params as Keras: ``kernel [in, units]`` (Glorot uniform), ``bias [units]``.
  """

  name: str
  units: int
  activation: str = 'linear'
  use_bias: bool = True
  compute_dtype: str | None = None

  def __post_init__(self):
    base.check_positive_int(self.name, 'units', self.units)
    get_activation(self.activation, owner=self.name)

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) != 1:
      raise ValueError(
          f'{self.name}: frames have shape {tuple(in_shape)}, expected a '
          'vector (features,); add a Flatten before this layer.')
    return (self.units,)

  def step_macs(self, in_shape: base.Shape) -> int:
    self.output_shape(in_shape)
    return in_shape[0] * self.units

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    self.output_shape(in_shape)
    params = {'kernel': jax.nn.initializers.glorot_uniform()(
        rng, (in_shape[0], self.units), jnp.float32)}
    if self.use_bias:
      params['bias'] = jnp.zeros((self.units,), jnp.float32)
    return params

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del train, rng
    expected = params['kernel'].shape[0]
    if x.ndim < 3 or x.shape[-1] != expected:
      raise ValueError(
          f'{self.name}: input has shape {tuple(x.shape)}, expected '
          f'[batch, time, {expected}].')
    y = matmul(x, params['kernel'], self.compute_dtype)
    if self.use_bias:
      y = y + params['bias']
    return get_activation(self.activation)(y)


@dataclasses.dataclass(frozen=True)
class Activation(base.Layer):
  """Element-wise activation, by name ('relu', 'tanh', ...)."""

  name: str
  activation: str

  def __post_init__(self):
    get_activation(self.activation, owner=self.name)

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    return get_activation(self.activation)(x)


@dataclasses.dataclass(frozen=True)
class Dropout(base.Layer):
  """Inverted dropout while training; the identity otherwise (and when streaming)."""

  name: str
  rate: float

  def __post_init__(self):
    if not 0.0 <= self.rate < 1.0:
      raise ValueError(
          f'{self.name}: rate is {self.rate!r}, expected 0 <= rate < 1.')

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params
    if not train or self.rate == 0.0:
      return x
    if rng is None:
      raise ValueError(f'{self.name}: training needs an rng key for dropout.')
    keep = jax.random.bernoulli(rng, 1.0 - self.rate, self.noise_shape(x))
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))

  def noise_shape(self, x: Array) -> tuple[int, ...]:
    """Shape of the keep mask, broadcast over ``x``: one draw per value."""
    return x.shape


@dataclasses.dataclass(frozen=True)
class ExpandDims(base.Layer):
  """Adds a trailing channel axis: ``[batch, time, feature]`` -> ``[..., feature, 1]``."""

  name: str = 'expand_dims'

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    return (*in_shape, 1)

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    return x[..., None]


@dataclasses.dataclass(frozen=True)
class FeaturePool(base.Layer):
  """Max pooling along the feature vector of each frame.

  ``[batch, time, features]`` -> ``[batch, time, (features - pool) // stride
  + 1]``, as Keras' ``MaxPool1D(pool, stride)`` on ``[..., features, 1]``
  (kws_streaming's DNN pools its flattened window this way).
  """

  name: str
  pool_size: int = 2
  strides: int = 2

  def __post_init__(self):
    for field in ('pool_size', 'strides'):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{self.name}: {field} is {value!r}, expected a '
                         'positive int.')

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) != 1 or in_shape[0] < self.pool_size:
      raise ValueError(
          f'{self.name}: frames have shape {tuple(in_shape)}, expected a '
          f'vector of at least pool_size={self.pool_size} features.')
    return ((in_shape[0] - self.pool_size) // self.strides + 1,)

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    (out,) = self.output_shape(x.shape[2:])
    span = (out - 1) * self.strides + 1
    return functools.reduce(jnp.maximum, [
        x[..., i:i + span:self.strides] for i in range(self.pool_size)])


@dataclasses.dataclass(frozen=True)
class Flatten(base.Layer):
  """Flattens a window of ``window`` frames into one vector per output frame.

  ``[batch, time, *frame]`` -> ``[batch, time - window + 1, window * prod(frame)]``
  in (time, feature, channel) order, as Keras' Flatten on
  ``[batch, window, feature, channel]``. Streaming keeps the last
  ``window - 1`` frames in a buffer ``[batch, window - 1, *frame]``
  (stateless when ``window == 1``); ``lookback = window - 1``.
  """

  name: str
  window: int = 1

  def __post_init__(self):
    base.check_positive_int(self.name, 'window', self.window)

  @property
  def _time_window(self) -> TimeWindow:
    return TimeWindow(self.window)

  @property
  def lookback(self) -> int:
    return self.window - 1

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    return (self.window * math.prod(in_shape),)

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    batch, time = x.shape[:2]
    out_time = self.output_length(time)
    if out_time == 1:  # one window (a streaming step): a reshape, no copies
      return x[:, :self.window].reshape(batch, 1, -1)
    windows = jnp.stack([x[:, i:i + out_time] for i in range(self.window)],
                        axis=2)
    return windows.reshape(batch, out_time, -1)

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    return self._time_window.init_state(batch_size, tuple(in_shape), dtype)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    base.check_blocks(self.name, frame, 1, 'frame')
    if not isinstance(state, tuple):
      batch, _, *frame_shape = state.shape
      base.check_frame(self.name, frame[:, :1], (batch, 1, *frame_shape),
                       state.dtype)
    state, window_input = self._time_window.stream(state, frame)
    return state, self.apply(params, window_input)
