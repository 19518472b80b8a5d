"""SVDF: kws_streaming's singular value decomposition filter, streamed.

An SVDF layer factors a 2-D (time x feature) filter into a projection of
each frame (``dense1``, no bias) and a per-unit filter in time
(``DepthwiseConv1D`` over ``memory_size`` frames, with bias), optionally
followed by BatchNorm, the activation and a second projection (``dense2``,
with bias, when ``units2 > 0``). See "End-to-end streaming keyword spotting"
(Alvarez and Park, 2019) and kws_streaming's ``layers/svdf.py``.

Frames are vectors: ``[batch, time, features]`` -> ``[batch, time',
units]``. Only the time filter looks at more than one frame, so it alone
keeps streaming state.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.activations import get_activation
from kws_jax.layers.core import Dense
from kws_jax.layers.normalization import BatchNorm
from kws_jax.layers.window import TimeWindow

Array = jax.Array

# kws_streaming's svdf_pad: 0 -> 'valid', 1 -> 'causal'.
SVDF_PADDINGS = ('valid', 'causal')


@dataclasses.dataclass(frozen=True)
class DepthwiseConv1D(base.Layer):
  """Each channel of vector frames filtered in time by its own kernel.

  ``x [batch, time, C]`` -> ``y [batch, time', C]`` with
  ``y[:, t, c] = sum_i x[:, t + i, c] * depthwise_kernel[i, c] + bias[c]``
  over ``i < memory_size`` (after the time padding). As kws_streaming's
  ``DepthwiseConv1D``: its ``time_kernel [memory_size, C]`` and
  ``time_bias [C]`` are ``depthwise_kernel`` and ``bias`` here, in that order
  (names ``params_from_keras`` knows).

  ``time_padding``: ``'valid'`` (``time' = time - memory_size + 1``) or
  ``'causal'`` (``memory_size - 1`` zero frames first, ``time' = time``).

  Streaming: a step takes ``n >= 1`` frames and returns ``n``; the state
  ``[batch, memory_size - 1, C]`` holds the latest inputs (stateless when
  ``memory_size == 1``). ``lookback`` is ``memory_size - 1`` for valid
  padding, 0 for causal.
  """

  name: str
  memory_size: int
  use_bias: bool = True
  time_padding: str = 'causal'

  def __post_init__(self):
    base.check_positive_int(self.name, 'memory_size', self.memory_size)
    base.check_choice(self.name, 'time_padding', self.time_padding,
                      SVDF_PADDINGS)

  @property
  def window(self) -> TimeWindow:
    return TimeWindow(self.memory_size, 1, self.time_padding)

  @property
  def lookback(self) -> int:
    return self.window.lookback

  @property
  def pads_past(self) -> bool:
    """Causal padding reads zeros before frame 0; its stream reads the past."""
    return self.window.left_pad > 0

  @property
  def receptive_field(self) -> int:
    return self.memory_size

  def output_length(self, length: int) -> int:
    out = self.window.output_length(length)
    if out < 1:
      raise ValueError(
          f'{self.name}: memory_size {self.memory_size} with '
          f'{self.time_padding} padding needs at least {self.memory_size} '
          f'frames in time, but only {length} remain. Use a smaller '
          'memory_size, causal padding or a longer clip.')
    return out

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) != 1:
      raise ValueError(
          f'{self.name}: frames have shape {tuple(in_shape)}, expected a '
          'vector (channels,).')
    return tuple(in_shape)

  def step_macs(self, in_shape: base.Shape) -> int:
    return self.memory_size * self.output_shape(in_shape)[0]

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    (channels,) = self.output_shape(in_shape)
    params = {'depthwise_kernel': jax.nn.initializers.glorot_uniform()(
        rng, (self.memory_size, channels), jnp.float32)}
    if self.use_bias:
      params['bias'] = jnp.zeros((channels,), jnp.float32)
    return params

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del train, rng
    base.check_rank(self.name, x, 1)
    self._check_channels(params, x)
    self.output_length(x.shape[1])
    return self._valid_filter(params, self.window.full_window(x))

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    return self.window.init_state(batch_size, self.output_shape(in_shape),
                                  dtype)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    base.check_rank(self.name, frame, 1, 'frame')
    base.check_blocks(self.name, frame, 1, 'frame')
    self._check_channels(params, frame)
    if not isinstance(state, tuple):
      base.check_frame(self.name, frame[:, :1],
                       (state.shape[0], 1, state.shape[2]), state.dtype)
    state, window_input = self.window.stream(state, frame)
    return state, self._valid_filter(params, window_input)

  def _check_channels(self, params: base.Params, x: Array) -> None:
    expected = params['depthwise_kernel'].shape[1]
    if x.shape[-1] != expected:
      raise ValueError(
          f'{self.name}: input has {x.shape[-1]} channels, expected '
          f'{expected} (the kernel\'s channels).')

  def _valid_filter(self, params: base.Params, x: Array) -> Array:
    """Valid filter of ``x [batch, time, C]``: a multiply-add per tap."""
    kernel = params['depthwise_kernel'].astype(x.dtype)
    frames = x.shape[1] - self.memory_size + 1
    y = None
    for i in range(self.memory_size):
      term = x[:, i:i + frames] * kernel[i]
      y = term if y is None else y + term
    if self.use_bias:
      y = y + params['bias'].astype(x.dtype)
    return y


@dataclasses.dataclass(frozen=True)
class Svdf(base.Layer):
  """kws_streaming's ``Svdf`` on vector frames.

  ``x [batch, time, F]`` -> ``[batch, time', units2 if units2 > 0 else
  units1]``:

      y = dense1(dropout(x))               # [.., units1], no bias (use_bias1)
      y = depth_cnn1(y)                    # memory_size frames in time, bias
      y = batch_norm(y)                    # if use_batch_norm (scale: bn_scale)
      y = activation(y)
      y = dense2(y)                        # if units2 > 0, with bias

  ``dropout`` is kws_streaming's non-scaling dropout of the input: while
  training, inputs are zeroed with probability ``dropout`` and the others are
  *not* rescaled; inference leaves them alone. ``time_padding`` ('valid' or
  'causal', kws_streaming's ``svdf_pad`` 0 or 1) places the time filter:
  valid gives ``time' = time - memory_size + 1``, causal ``time' = time``.

  Params are dicts keyed by the children's names, ``dense1``,
  ``depth_cnn1``, ``dense2`` and ``batch_norm``: ``children()`` lists them
  in the order kws_streaming's Svdf lists its weights (``dense1/kernel``,
  ``time_kernel``, ``time_bias``, ``dense2/kernel``, ``dense2/bias``, then
  BatchNorm's), so ``params_from_keras`` maps a Keras Svdf one to one.

  Streaming: a step takes ``n >= 1`` frames and returns ``n``. The state is
  ``{'depth_cnn1': [batch, memory_size - 1, units1]}``, the latest ``dense1``
  outputs (``{}`` when ``memory_size == 1``); kws_streaming keeps the same
  buffer. BatchNorm uses its running statistics (a per-unit affine map) and
  is stateless. ``lookback`` is ``memory_size - 1`` for valid padding, 0 for
  causal.
  """

  name: str
  units1: int
  memory_size: int
  units2: int = -1
  activation: str = 'relu'
  use_bias: bool = True  # of the time filter
  use_bias1: bool = False  # of dense1
  dropout: float = 0.0
  use_batch_norm: bool = False
  bn_scale: bool = False
  time_padding: str = 'causal'

  def __post_init__(self):
    base.check_positive_int(self.name, 'units1', self.units1)
    base.check_positive_int(self.name, 'memory_size', self.memory_size)
    if not isinstance(self.units2, int) or isinstance(self.units2, bool):
      raise ValueError(f'{self.name}: units2 is {self.units2!r}, expected an '
                       'int (<= 0: no second projection).')
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f'{self.name}: dropout is {self.dropout!r}, expected '
                       '0 <= dropout < 1.')
    get_activation(self.activation, owner=self.name)
    base.check_choice(self.name, 'time_padding', self.time_padding,
                      SVDF_PADDINGS)

  # -- Children ---------------------------------------------------------------

  @functools.cached_property
  def dense1(self) -> Dense:
    return Dense('dense1', self.units1, use_bias=self.use_bias1)

  @functools.cached_property
  def depth_cnn1(self) -> DepthwiseConv1D:
    return DepthwiseConv1D('depth_cnn1', self.memory_size,
                           use_bias=self.use_bias,
                           time_padding=self.time_padding)

  @functools.cached_property
  def batch_norm(self) -> BatchNorm | None:
    return (BatchNorm('batch_norm', scale=self.bn_scale)
            if self.use_batch_norm else None)

  @functools.cached_property
  def dense2(self) -> Dense | None:
    return Dense('dense2', self.units2) if self.units2 > 0 else None

  def children(self) -> tuple[base.Layer, ...]:
    # Keras' weight order: dense2 before batch_norm, unlike the computation.
    return tuple(layer for layer in (self.dense1, self.depth_cnn1,
                                     self.dense2, self.batch_norm)
                 if layer is not None)

  # -- Geometry ---------------------------------------------------------------

  @property
  def lookback(self) -> int:
    return self.depth_cnn1.lookback

  @property
  def receptive_field(self) -> int:
    return self.memory_size

  def output_length(self, length: int) -> int:
    try:
      return self.depth_cnn1.output_length(length)
    except ValueError as error:  # named after this layer, not its filter
      raise ValueError(f'{self.name}/{error}') from None

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) != 1:
      raise ValueError(
          f'{self.name}: frames have shape {tuple(in_shape)}, expected a '
          'vector (features,); add a Flatten before this layer.')
    return (self.units2 if self.units2 > 0 else self.units1,)

  def step_macs(self, in_shape: base.Shape) -> int:
    self.output_shape(in_shape)
    macs = in_shape[0] * self.units1 + self.memory_size * self.units1
    if self.units2 > 0:
      macs += self.units1 * self.units2
    return macs

  # -- Parameters and forms ---------------------------------------------------

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    self.output_shape(in_shape)
    params = {}
    for index, layer in enumerate(self.children()):
      shape = tuple(in_shape) if layer is self.dense1 else (self.units1,)
      params[layer.name] = layer.init(jax.random.fold_in(rng, index), shape)
    return params

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    return self._forward(params, x, train, rng)[0]

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    return self._forward(params, x, True, rng)

  def _forward(self, params: base.Params, x: Array, train: bool,
               rng: Array | None) -> tuple[Array, base.Params]:
    self._check_input(params, x, 'input')
    if train and self.dropout > 0.0:
      if rng is None:
        raise ValueError(f'{self.name}: training needs an rng key for '
                         f'dropout {self.dropout:g}.')
      keep = jax.random.bernoulli(rng, 1.0 - self.dropout, x.shape)
      x = jnp.where(keep, x, jnp.zeros_like(x))  # not rescaled
    y = self.dense1.apply(params['dense1'], x)
    y = self.depth_cnn1.apply(params['depth_cnn1'], y)
    updates = {}
    if self.batch_norm is not None:
      if train:
        y, updates['batch_norm'] = self.batch_norm.apply_train(
            params['batch_norm'], y)
      else:
        y = self.batch_norm.apply(params['batch_norm'], y)
    return self._project(params, y), updates

  def _project(self, params: base.Params, y: Array) -> Array:
    y = get_activation(self.activation)(y)
    if self.dense2 is not None:
      y = self.dense2.apply(params['dense2'], y)
    return y

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    state = self.depth_cnn1.init_state(batch_size, (self.units1,), dtype)
    return {'depth_cnn1': state} if jax.tree.leaves(state) else {}

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    self._check_input(params, frame, 'frame')
    y = self.dense1.apply(params['dense1'], frame)
    # Without memory (memory_size 1) the state is {} or, inside a stack that
    # keeps no entry for this layer, (); it is returned as it came.
    stateful = isinstance(state, dict) and 'depth_cnn1' in state
    layer_state, y = self.depth_cnn1.step(
        params['depth_cnn1'], state['depth_cnn1'] if stateful else (), y)
    if self.batch_norm is not None:
      y = self.batch_norm.apply(params['batch_norm'], y)
    new_state = {'depth_cnn1': layer_state} if stateful else state
    return new_state, self._project(params, y)

  def _check_input(self, params: base.Params, x: Array, what: str) -> None:
    base.check_rank(self.name, x, 1, what)
    expected = params['dense1']['kernel'].shape[0]
    if x.shape[-1] != expected:
      raise ValueError(
          f'{self.name}: {what} has shape {tuple(x.shape)}, expected '
          f'[batch, time, {expected}] (the features dense1 was built for).')
