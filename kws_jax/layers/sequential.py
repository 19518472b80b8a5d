"""A stack of streaming layers that is itself a streaming layer."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Sequential(base.Layer):
  """Applies ``layers`` in order.

  Params and state are dicts keyed by layer name, holding only the layers
  that have params (or state): ``{'conv2d_0': {'kernel': ..., 'bias': ...}}``.
  The first layer may consume a block of input frames per step (a frontend
  taking 320 audio samples); every later layer consumes the one frame its
  predecessor emits, so warm-up frames add up: ``lookback`` is the sum of the
  layers' lookbacks.
  """

  name: str
  layers: tuple[base.Layer, ...]

  def __post_init__(self):
    if not self.layers:
      raise ValueError(f'{self.name}: needs at least one layer.')
    names = [layer.name for layer in self.layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
      raise ValueError(f'{self.name}: layer names must be unique, '
                       f'{", ".join(duplicates)} repeat.')
    for layer in self.layers[1:]:
      if layer.block_size != 1:
        raise ValueError(
            f'{self.name}: {layer.name} consumes blocks of {layer.block_size} '
            'frames per step, but only the first layer of a stack may: every '
            'later layer receives one frame per step.')

  @property
  def block_size(self) -> int:
    return self.layers[0].block_size

  @property
  def lookback(self) -> int:
    return sum(layer.lookback for layer in self.layers)

  def output_length(self, length: int) -> int:
    for layer in self.layers:
      length = layer.output_length(length)
    return length

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    for layer in self.layers:
      in_shape = layer.output_shape(in_shape)
    return in_shape

  def shapes(self, in_shape: base.Shape, length: int | None = None
             ) -> list[tuple[base.Layer, base.Shape, int | None]]:
    """``(layer, input frame shape, input length)`` for every layer, in order."""
    result = []
    for layer in self.layers:
      result.append((layer, in_shape, length))
      in_shape = layer.output_shape(in_shape)
      if length is not None:
        length = layer.output_length(length)
    return result

  def step_macs(self, in_shape: base.Shape) -> int:
    return sum(layer.step_macs(shape)
               for layer, shape, _ in self.shapes(in_shape))

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    params = {}
    for index, (layer, shape, _) in enumerate(self.shapes(in_shape)):
      layer_params = layer.init(jax.random.fold_in(rng, index), shape)
      if jax.tree.leaves(layer_params):
        params[layer.name] = layer_params
    return params

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    for index, layer in enumerate(self.layers):
      layer_rng = None if rng is None else jax.random.fold_in(rng, index)
      with jax.named_scope(layer.name):  # names ops in profiles and exports
        x = layer.apply(params.get(layer.name, {}), x, train=train,
                        rng=layer_rng)
    return x

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    state = {}
    for layer, shape, _ in self.shapes(in_shape):
      layer_state = layer.init_state(batch_size, shape, dtype)
      if jax.tree.leaves(layer_state):
        state[layer.name] = layer_state
    return state

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    new_state = {}
    for layer in self.layers:
      layer_state = state.get(layer.name, ())
      with jax.named_scope(layer.name):
        layer_state, frame = layer.step(params.get(layer.name, {}),
                                        layer_state, frame)
      if layer.name in state:
        new_state[layer.name] = layer_state
    return new_state, frame
