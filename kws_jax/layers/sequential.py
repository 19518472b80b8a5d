"""A stack of streaming layers that is itself a streaming layer."""

from __future__ import annotations

import dataclasses
import fractions
import functools
import math
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

  Streaming through the ratios: layer ``k`` sees ``rate_k`` of its frames per
  input frame of the stack (the product of the ratios before it), so the
  stack's block is the least input that gives every layer whole blocks,
  ``lcm_k(block_k / rate_k)``, and a step of the stack hands each layer a
  whole number of its own blocks. Warm-up frames compose through the ratios
  too: the ``w`` warm-up frames reaching a layer with blocks of ``b`` frames
  become ``w / b`` of its outputs, plus its own ``lookback``. A stack where
  ``w`` is not a multiple of ``b`` (its stream would read windows between
  those of the full-window form), or where a layer's block is not a whole
  number of input frames, cannot stream: it is refused when built, naming
  the layer.
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
    _ = self._geometry  # refuses a stack that cannot stream

  def children(self) -> tuple[base.Layer, ...]:
    return self.layers

  @functools.cached_property
  def _geometry(self) -> tuple[int, fractions.Fraction, int]:
    """``(block_size, output_ratio, lookback)`` of the stack."""
    rate = fractions.Fraction(1)
    block = 1
    warmup = fractions.Fraction(0)  # in frames of the current layer's input
    for layer in self.layers:
      need = layer.block_size / rate  # stack input frames per block
      if need.denominator != 1:
        raise ValueError(
            f'{self.name}: {layer.name} takes blocks of {layer.block_size} '
            f'frames, which is {need} input frames of the stack: not a whole '
            'number, so the stack cannot stream. Change the strides before '
            'it.')
      block = math.lcm(block, int(need))
      if warmup and layer.pads_past:
        raise ValueError(
            f'{self.name}: {layer.name} pads its past with zeros (causal or '
            f'semicausal time padding), but the layers before it emit '
            f'{warmup} warm-up frames, which its stream would read instead. '
            'Use causal or semicausal padding before it too (for the MFCC '
            "frontend, frontend.padding='semicausal'), or valid padding in "
            f'{layer.name}.')
      if warmup % layer.block_size:
        raise ValueError(
            f'{self.name}: the layers before {layer.name} leave {warmup} '
            f'warm-up frames, not a multiple of its block of '
            f'{layer.block_size}: its stream would read other windows than '
            'its full-window form. Use causal or semicausal time padding '
            f'before it, or a kernel that leaves a multiple of '
            f'{layer.block_size} frames.')
      warmup = warmup * layer.output_ratio + layer.lookback
      rate *= layer.output_ratio
    return block, rate, int(warmup)

  @property
  def block_size(self) -> int:
    return self._geometry[0]

  @property
  def output_ratio(self) -> fractions.Fraction:
    return self._geometry[1]

  @property
  def lookback(self) -> int:
    return self._geometry[2]

  @property
  def receptive_field(self) -> int | float:
    field = 1
    for layer in reversed(self.layers):
      field = (field - 1) / layer.output_ratio + layer.receptive_field
    return field if math.isinf(field) else int(field)

  @property
  def supports_step(self) -> bool:
    return all(layer.supports_step for layer in self.layers)

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
    """Multiply-accumulates of one step of the stack (one block of its input)."""
    total, rate = 0, fractions.Fraction(1)
    for layer, shape, _ in self.shapes(in_shape):
      blocks = self.block_size * rate / layer.block_size
      total += int(blocks) * layer.step_macs(shape)
      rate *= layer.output_ratio
    return total

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

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    updates = {}
    for index, layer in enumerate(self.layers):
      layer_rng = None if rng is None else jax.random.fold_in(rng, index)
      with jax.named_scope(layer.name):
        x, layer_updates = layer.apply_train(params.get(layer.name, {}), x,
                                             rng=layer_rng)
      if layer_updates:
        updates[layer.name] = layer_updates
    return x, updates

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
    state = state or {}  # () from a parent that kept no state for the stack
    new_state = {}
    for layer in self.layers:
      layer_state = state.get(layer.name, ())
      with jax.named_scope(layer.name):
        layer_state, frame = layer.step(params.get(layer.name, {}),
                                        layer_state, frame)
      if layer.name in state:
        new_state[layer.name] = layer_state
    return new_state, frame
