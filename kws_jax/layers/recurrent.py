"""Recurrent layers: the full window scans the cell, a step runs it on new frames."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base

Array = jax.Array

# Longer inputs (hours of stream at once) scan the cell in a loop.
MAX_UNROLLED = 256


@dataclasses.dataclass(frozen=True)
class GRU(base.Layer):
  """Keras' ``GRU`` (``reset_after=True``, tanh and sigmoid), every frame out.

  ``[batch, time, features]`` -> ``[batch, time, units]``: output ``t`` is
  the hidden state after frame ``t``, from a zero state at the first frame.
  Params as Keras: ``kernel [features, 3 units]``, ``recurrent_kernel
  [units, 3 units]`` and ``bias [2, 3 units]`` (input and recurrent biases),
  gates in the order update (z), reset (r), candidate (h):

      z = sigmoid(x W_z + b_z + h U_z + c_z)
      r = sigmoid(x W_r + b_r + h U_r + c_r)
      n = tanh(x W_h + b_h + r * (h U_h + c_h))
      h' = z * h + (1 - z) * n

  Streaming: the state is the hidden state ``[batch, units]``; a step of
  ``n`` frames returns their ``n`` outputs, so the stream equals the full
  window frame for frame (``lookback == 0``), and the receptive field is
  unbounded. For kws_streaming's ``return_sequences=0`` follow it with
  ``LastFrames(window=clip frames)``.
  """

  name: str
  units: int

  def __post_init__(self):
    base.check_positive_int(self.name, 'units', self.units)

  @property
  def receptive_field(self) -> float:
    return math.inf

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) != 1:
      raise ValueError(
          f'{self.name}: frames have shape {tuple(in_shape)}, expected a '
          'vector (features,); flatten the feature axes first.')
    return (self.units,)

  def step_macs(self, in_shape: base.Shape) -> int:
    self.output_shape(in_shape)
    return 3 * self.units * (in_shape[0] + self.units)

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    self.output_shape(in_shape)
    kernel_rng, recurrent_rng = jax.random.split(rng)
    width = 3 * self.units
    return {
        'kernel': jax.nn.initializers.glorot_uniform()(
            kernel_rng, (in_shape[0], width), jnp.float32),
        'recurrent_kernel': jax.nn.initializers.orthogonal()(
            recurrent_rng, (self.units, width), jnp.float32),
        'bias': jnp.zeros((2, width), jnp.float32),
    }

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del train, rng
    state = self.init_state(x.shape[0], tuple(x.shape[2:]), x.dtype)
    return self._run(params, state, x)[1]

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return jnp.zeros((batch_size, self.units), dtype)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    base.check_blocks(self.name, frame, 1, 'frame')
    base.check_frame(self.name, state, (frame.shape[0], self.units),
                     frame.dtype, what='state')
    return self._run(params, state, frame)

  def _run(self, params: base.Params, state: Array, x: Array
           ) -> tuple[Array, Array]:
    """Runs the cell over ``x [batch, time, features]`` from ``state``."""
    self._check_features(params, x)
    inputs = jnp.matmul(x, params['kernel']) + params['bias'][0]
    recurrent_kernel, recurrent_bias = (params['recurrent_kernel'],
                                        params['bias'][1])
    units = self.units

    def cell(h, projected):
      hidden = jnp.matmul(h, recurrent_kernel) + recurrent_bias
      z = jax.nn.sigmoid(projected[:, :units] + hidden[:, :units])
      r = jax.nn.sigmoid(projected[:, units:2 * units] +
                         hidden[:, units:2 * units])
      candidate = jnp.tanh(projected[:, 2 * units:] + r * hidden[:, 2 * units:])
      h = z * h + (1.0 - z) * candidate
      return h, h

    if x.shape[1] > MAX_UNROLLED:
      state, outputs = jax.lax.scan(cell, state, jnp.moveaxis(inputs, 1, 0))
      return state, jnp.moveaxis(outputs, 0, 1)
    # Clips and steps run the cell in a Python loop: no WHILE op in the
    # exported graph (TFLite's int8 calibration crashes on one).
    outputs = []
    for t in range(x.shape[1]):
      state, out = cell(state, inputs[:, t])
      outputs.append(out)
    return state, jnp.stack(outputs, axis=1)

  def _check_features(self, params: base.Params, x: Array) -> None:
    expected = params['kernel'].shape[0]
    if x.ndim != 3 or x.shape[-1] != expected:
      raise ValueError(
          f'{self.name}: input has shape {tuple(x.shape)}, expected '
          f'[batch, time, {expected}].')


@dataclasses.dataclass(frozen=True)
class LastFrames(base.Layer):
  """Keeps the frames that end a whole ``window``: ``[batch, T - window + 1, ...]``.

  After a recurrent layer, a window of one clip's frames leaves the output
  of the clip's last frame, which is kws_streaming's ``return_sequences=0``.
  Streaming passes every frame through (stateless; the first ``window - 1``
  are warm-up frames, ``lookback = window - 1``).
  """

  name: str
  window: int = 1

  def __post_init__(self):
    base.check_positive_int(self.name, 'window', self.window)

  @property
  def lookback(self) -> int:
    return self.window - 1

  @property
  def receptive_field(self) -> int:
    return 1

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    self.output_length(x.shape[1])
    return x[:, self.window - 1:]

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    del params
    return state, frame
