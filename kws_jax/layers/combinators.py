"""Layers made of layers that read one input: a residual sum and parallel branches."""

from __future__ import annotations

import dataclasses
import fractions
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.activations import get_activation

Array = jax.Array


class _Branches(base.Layer):
  """Branches that read the same frames and emit frames at one rate.

  Subclasses list the branches (``None`` is the identity) and combine their
  outputs. The branches must have equal ``block_size`` and
  ``output_ratio``; their warm-ups may differ: the full-window form crops
  the start of a branch with a smaller ``lookback`` by the difference, so
  that output ``i`` of every branch covers the same input, and ``lookback``
  is the largest. The stream needs no delay buffer: each branch's step
  already emits the frame that belongs with the others'. Params and state
  are dicts keyed by branch name (names must differ).
  """

  name: str

  def branches(self) -> tuple[base.Layer | None, ...]:
    raise NotImplementedError

  def combine(self, outputs: list[Array]) -> Array:
    """Combines the branches' outputs, cropped to the same frames."""
    raise NotImplementedError

  def combined_shape(self, shapes: dict[str, base.Shape]) -> base.Shape:
    """Frame shape of ``combine`` for the branches' frame shapes (by name)."""
    raise NotImplementedError

  def _check_branches(self) -> None:
    layers = self.children()
    names = [layer.name for layer in layers]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
      raise ValueError(f'{self.name}: branches named {", ".join(repeated)} '
                       'repeat; name them apart.')
    first = layers[0]
    for layer in layers[1:]:
      for field in ('block_size', 'output_ratio'):
        mine, theirs = getattr(first, field), getattr(layer, field)
        if mine != theirs:
          raise ValueError(
              f'{self.name}: {first.name} has {field} {mine} but '
              f'{layer.name} has {theirs}; branches must read and emit '
              'frames at one rate (give them the same time stride).')

  def children(self) -> tuple[base.Layer, ...]:
    return tuple(layer for layer in self.branches() if layer is not None)

  # -- Geometry ---------------------------------------------------------------

  @property
  def block_size(self) -> int:
    return self.children()[0].block_size

  @property
  def output_ratio(self) -> fractions.Fraction:
    return self.children()[0].output_ratio

  @property
  def lookback(self) -> int:
    return max(layer.lookback for layer in self.children())

  @property
  def receptive_field(self) -> int | float:
    return max(layer.receptive_field for layer in self.children())

  @property
  def supports_step(self) -> bool:
    return all(layer.supports_step for layer in self.children())

  def output_length(self, length: int) -> int:
    return min(layer.output_length(length) for layer in self.children())

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    return self.combined_shape({
        'identity' if layer is None else layer.name:
            tuple(in_shape) if layer is None else
            tuple(layer.output_shape(in_shape))
        for layer in self.branches()})

  def step_macs(self, in_shape: base.Shape) -> int:
    return sum(layer.step_macs(in_shape) for layer in self.children())

  # -- Parameters and forms ---------------------------------------------------

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    self.output_shape(in_shape)
    params = {}
    for index, layer in enumerate(self.children()):
      layer_params = layer.init(jax.random.fold_in(rng, index), in_shape)
      if jax.tree.leaves(layer_params):
        params[layer.name] = layer_params
    return params

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    return self._forward(params, x, train, rng)[0]

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    return self._forward(params, x, True, rng)

  def _forward(self, params, x, train, rng):
    outputs, updates = [], {}
    for index, layer in enumerate(self.branches()):
      if layer is None:
        outputs.append(x)
        continue
      layer_rng = None if rng is None else jax.random.fold_in(rng, index)
      with jax.named_scope(layer.name):
        if train:
          y, layer_updates = layer.apply_train(params.get(layer.name, {}), x,
                                               rng=layer_rng)
        else:
          y, layer_updates = layer.apply(params.get(layer.name, {}), x), {}
      outputs.append(y)
      if layer_updates:
        updates[layer.name] = layer_updates
    frames = min(y.shape[1] for y in outputs)
    return self.combine([y[:, y.shape[1] - frames:] for y in outputs]), updates

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    state = {}
    for layer in self.children():
      layer_state = layer.init_state(batch_size, in_shape, dtype)
      if jax.tree.leaves(layer_state):
        state[layer.name] = layer_state
    return state

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    new_state, outputs = {}, []
    for layer in self.branches():
      if layer is None:
        outputs.append(frame)
        continue
      with jax.named_scope(layer.name):
        layer_state, out = layer.step(params.get(layer.name, {}),
                                      state.get(layer.name, ()), frame)
      if layer.name in state:
        new_state[layer.name] = layer_state
      outputs.append(out)
    return new_state, self.combine(outputs)


@dataclasses.dataclass(frozen=True)
class Residual(_Branches):
  """``activation(body(x) + shortcut(x))``; the shortcut is the identity if None.

  Both branches emit frames of one shape; geometry, params and state as
  ``_Branches``.
  """

  name: str
  body: base.Layer
  shortcut: base.Layer | None = None
  activation: str = 'linear'

  def __post_init__(self):
    get_activation(self.activation, owner=self.name)
    self._check_branches()

  def branches(self) -> tuple[base.Layer | None, ...]:
    return (self.body, self.shortcut)

  def combined_shape(self, shapes: dict[str, base.Shape]) -> base.Shape:
    if len(set(shapes.values())) != 1:
      raise ValueError(
          f'{self.name}: the branches emit frames of shapes '
          + ', '.join(f'{name} {shape}' for name, shape in shapes.items())
          + '; a sum needs one shape (e.g. a 1x1 convolution as shortcut).')
    return shapes[self.body.name]

  def combine(self, outputs: list[Array]) -> Array:
    body, shortcut = outputs
    return get_activation(self.activation)(body + shortcut)


@dataclasses.dataclass(frozen=True)
class Parallel(_Branches):
  """Branches on one input, concatenated on the last axis or added.

  ``combine='concat'``: frames of shapes ``(..., c_k)`` that agree but for
  the last axis give ``(..., sum c_k)``; ``'add'``: frames of one shape are
  summed. Geometry, params and state as ``_Branches``.
  """

  name: str
  layers: tuple[base.Layer, ...]
  mode: str = 'concat'

  def __post_init__(self):
    base.check_choice(self.name, 'mode', self.mode, ('concat', 'add'))
    if len(self.layers) < 2:
      raise ValueError(f'{self.name}: has {len(self.layers)} branch(es), '
                       'expected at least 2.')
    self._check_branches()

  def branches(self) -> Sequence[base.Layer]:
    return self.layers

  def combined_shape(self, shapes: dict[str, base.Shape]) -> base.Shape:
    values = list(shapes.values())
    if self.mode == 'add':
      fits = len(set(values)) == 1
    else:
      fits = len({(len(s), s[:-1]) for s in values}) == 1 and values[0]
    if not fits:
      raise ValueError(
          f'{self.name}: the branches emit frames of shapes '
          + ', '.join(f'{name} {shape}' for name, shape in shapes.items())
          + (', expected one shape to add.' if self.mode == 'add' else
             ', expected shapes that differ only in the last axis.'))
    if self.mode == 'add':
      return values[0]
    return (*values[0][:-1], sum(s[-1] for s in values))

  def combine(self, outputs: list[Array]) -> Array:
    if self.mode == 'add':
      return sum(outputs[1:], outputs[0])
    return jnp.concatenate(outputs, axis=-1)
