"""BC-ResNet's broadcasted residual learning (Kim et al. 2021), streaming.

A BC-ResBlock runs a 2-D frequency branch ``f = frequency(x)`` (a
frequency-wise depthwise convolution and SubSpectralNorm in kws_streaming),
averages ``f`` over frequency, runs a 1-D temporal branch on that (a
temporal depthwise convolution, BatchNorm, swish, a 1x1 convolution and
dropout), broadcasts the result back over frequency and adds it to ``f``
(and, in a normal block, to the identity ``x``):

    y = relu(x + f + broadcast(temporal(mean_over_frequency(f))))

``BroadcastResidual`` is that sum; ``FeatureMean`` the mean over frequency
(also used by BC-ResNet's head) and ``SpatialDropout`` Keras'
``SpatialDropout2D`` that kws_streaming ends the temporal branch with.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.activations import get_activation
from kws_jax.layers.core import Dropout

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FeatureMean(base.Layer):
  """Mean over the feature axis, kept with size 1 (a keepdims mean).

  ``[batch, time, F, C]`` -> ``[batch, time, 1, C]``. Frame-wise and
  stateless: ``lookback`` 0, a step is the mean of each frame. Computed as
  a depthwise convolution with a constant ``1 / F`` kernel over the feature
  axis, which TFLite runs as DEPTHWISE_CONV_2D: ``jnp.mean`` becomes SUM
  and MUL, and TensorFlow Lite Micro's int8 SUM disagrees with LiteRT's (by
  up to 128 units on BC-ResNet); an average pool would keep its input's
  int8 scale, too coarse for the mean (BC-ResNet's full-integer accuracy
  fell from 52.6% to 33.3%). The convolution's output gets a scale of its
  own, and ``1 / F`` is exact in int8 (127 at scale ``1 / (127 F)``).
  """

  name: str = 'feature_mean'

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) < 2:
      raise ValueError(f'{self.name}: frames have shape {tuple(in_shape)}, '
                       'expected (feature, channels).')
    return (1, *in_shape[1:])

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    base.check_rank(self.name, x, 2)
    features, channels = x.shape[2], x.shape[3]
    kernel = jnp.full((1, features, 1, channels), 1.0 / features, x.dtype)
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), 'VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        feature_group_count=channels)


@dataclasses.dataclass(frozen=True)
class SpatialDropout(Dropout):
  """Keras' ``SpatialDropout2D``: drops whole channels while training.

  ``[batch, time, ..., C]`` -> the same. While training, each (example,
  channel) is kept with probability ``1 - rate`` for all its frames and
  features and scaled by ``1 / (1 - rate)`` (noise shape ``[batch, 1, ...,
  1, C]``); the identity otherwise and when streaming (stateless,
  ``lookback`` 0).
  """

  name: str
  rate: float

  def noise_shape(self, x: Array) -> tuple[int, ...]:
    return (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)


@dataclasses.dataclass(frozen=True)
class BroadcastResidual(base.Layer):
  """``activation(f + broadcast(temporal(f)) [+ x])`` with ``f = frequency(x)``.

  Shapes: ``x [batch, time, F, C]``; ``frequency`` emits frames ``(F', C')``
  (``(F, C)`` when ``identity``: the sum includes ``x``); ``temporal`` reads
  those and emits ``(1, C')`` frames, broadcast over the ``F'`` features (or
  ``(F', C')`` frames, added as they are). Output ``[batch, time_out, F',
  C']``.

  Both branches run at the input's frame rate (``block_size`` and
  ``output_ratio`` 1; put time strides and pooling outside the block), so
  stream output ``j`` of each belongs to stream output ``j`` of the others.
  Warm-ups add up: ``lookback = frequency.lookback + temporal.lookback``; the
  full-window form crops ``f`` by ``temporal.lookback`` and ``x`` by the
  whole ``lookback`` at the start, so that all summands cover the same
  frames (as ``Residual`` does), and the stream needs no delay buffer. With
  causal branches (kws_streaming's ``paddings='causal'``) both forms agree
  frame for frame.

  Params and state are dicts keyed by branch name (which must differ).
  """

  name: str
  frequency: base.Layer
  temporal: base.Layer
  identity: bool = True
  activation: str = 'relu'

  def __post_init__(self):
    get_activation(self.activation, owner=self.name)
    if self.frequency.name == self.temporal.name:
      raise ValueError(f'{self.name}: the branches are both named '
                       f'{self.frequency.name!r}; name them apart.')
    for layer in self.children():
      if layer.block_size != 1 or layer.output_ratio != 1:
        raise ValueError(
            f'{self.name}: {layer.name} has block_size {layer.block_size} and '
            f'output_ratio {layer.output_ratio}, expected 1 and 1: the '
            'broadcast sum adds the branches frame by frame (put time strides '
            'and pooling outside the block).')
    if self.frequency.lookback and self.temporal.pads_past:
      raise ValueError(
          f'{self.name}: {self.temporal.name} pads its past with zeros, but '
          f'{self.frequency.name} before it emits '
          f'{self.frequency.lookback} warm-up frames, which its stream would '
          'read instead; use causal padding in both branches.')

  def children(self) -> tuple[base.Layer, ...]:
    return (self.frequency, self.temporal)

  # -- Geometry ---------------------------------------------------------------

  @property
  def output_ratio(self) -> fractions.Fraction:
    return fractions.Fraction(1)

  @property
  def lookback(self) -> int:
    return self.frequency.lookback + self.temporal.lookback

  @property
  def receptive_field(self) -> int | float:
    field = self.frequency.receptive_field + self.temporal.receptive_field - 1
    return field if math.isinf(field) else int(field)

  @property
  def supports_step(self) -> bool:
    return all(layer.supports_step for layer in self.children())

  def output_length(self, length: int) -> int:
    return self.temporal.output_length(self.frequency.output_length(length))

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    in_shape = tuple(in_shape)
    shape = tuple(self.frequency.output_shape(in_shape))
    temporal = tuple(self.temporal.output_shape(shape))
    broadcast = (1,) * (len(shape) - 1) + shape[-1:]
    if temporal not in (shape, broadcast):
      raise ValueError(
          f'{self.name}: {self.temporal.name} emits frames of shape '
          f'{temporal} from {self.frequency.name}\'s {shape}, expected '
          f'{broadcast} (broadcast over the features) or {shape}.')
    if self.identity and shape != in_shape:
      raise ValueError(
          f'{self.name}: {self.frequency.name} emits frames of shape {shape} '
          f'but the input frames (the identity) have shape {in_shape}; the '
          'sum needs one shape (identity=False drops the identity).')
    return shape

  def step_macs(self, in_shape: base.Shape) -> int:
    shape = self.frequency.output_shape(in_shape)
    return (self.frequency.step_macs(in_shape) +
            self.temporal.step_macs(shape))

  # -- Parameters and forms ---------------------------------------------------

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    self.output_shape(in_shape)
    params = {}
    shapes = (in_shape, self.frequency.output_shape(in_shape))
    for index, (layer, shape) in enumerate(zip(self.children(), shapes)):
      layer_params = layer.init(jax.random.fold_in(rng, index), shape)
      if jax.tree.leaves(layer_params):
        params[layer.name] = layer_params
    return params

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    return self._forward(params, x, train, rng)[0]

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    return self._forward(params, x, True, rng)

  def _branch(self, layer: base.Layer, params: base.Params, x: Array,
              index: int, train: bool, rng: Array | None
              ) -> tuple[Array, base.Params]:
    layer_rng = None if rng is None else jax.random.fold_in(rng, index)
    with jax.named_scope(layer.name):
      if train:
        return layer.apply_train(params.get(layer.name, {}), x, rng=layer_rng)
      return layer.apply(params.get(layer.name, {}), x), {}

  def _forward(self, params, x, train, rng):
    self.output_shape(x.shape[2:])
    f, f_updates = self._branch(self.frequency, params, x, 0, train, rng)
    t, t_updates = self._branch(self.temporal, params, f, 1, train, rng)
    frames = t.shape[1]  # the common last frames of all summands
    y = self._sum(x[:, x.shape[1] - frames:], f[:, f.shape[1] - frames:], t)
    updates = {}
    for layer, layer_updates in zip(self.children(), (f_updates, t_updates)):
      if layer_updates:
        updates[layer.name] = layer_updates
    return y, updates

  def _sum(self, x: Array, f: Array, t: Array) -> Array:
    y = f + t
    if self.identity:
      y = y + x
    return get_activation(self.activation)(y)

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    shapes = (in_shape, self.frequency.output_shape(in_shape))
    state = {}
    for layer, shape in zip(self.children(), shapes):
      layer_state = layer.init_state(batch_size, shape, dtype)
      if jax.tree.leaves(layer_state):
        state[layer.name] = layer_state
    return state

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    new_state, inputs, outputs = {}, frame, []
    for layer in self.children():  # temporal reads what frequency emits
      with jax.named_scope(layer.name):
        layer_state, inputs = layer.step(params.get(layer.name, {}),
                                         state.get(layer.name, ()), inputs)
      if layer.name in state:
        new_state[layer.name] = layer_state
      outputs.append(inputs)
    f, t = outputs
    return new_state, self._sum(frame, f, t)
