"""Layers made of layers: a residual sum of two branches over one input."""

from __future__ import annotations

import dataclasses
import fractions
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.activations import get_activation

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Residual(base.Layer):
  """``activation(body(x) + shortcut(x))``; the shortcut is the identity if None.

  Both branches read the same frames and must emit frames of one shape at
  one rate (equal ``block_size`` and ``output_ratio``). Their warm-ups may
  differ: the full-window form crops the start of the branch with the
  smaller ``lookback`` by the difference, so that output ``i`` of both
  covers the same input, and ``lookback`` is the larger of the two. The
  stream needs no delay buffer: each branch's step already emits the frame
  that belongs with the other's.

  Params and state are dicts keyed by branch name (the branches' ``name``
  fields, which must differ).
  """

  name: str
  body: base.Layer
  shortcut: base.Layer | None = None
  activation: str = 'linear'

  def __post_init__(self):
    get_activation(self.activation, owner=self.name)
    if self.shortcut is None:
      return
    if self.shortcut.name == self.body.name:
      raise ValueError(f'{self.name}: the branches are both named '
                       f'{self.body.name!r}; name them apart.')
    for field in ('block_size', 'output_ratio'):
      body, shortcut = getattr(self.body, field), getattr(self.shortcut, field)
      if body != shortcut:
        raise ValueError(
            f'{self.name}: {self.body.name} has {field} {body} but '
            f'{self.shortcut.name} has {shortcut}; the branches of a sum '
            'must read and emit frames at one rate (give the shortcut the '
            'same time stride).')

  def children(self) -> tuple[base.Layer, ...]:
    return (self.body,) if self.shortcut is None else (self.body,
                                                       self.shortcut)

  # -- Geometry ---------------------------------------------------------------

  @property
  def block_size(self) -> int:
    return self.body.block_size

  @property
  def output_ratio(self) -> fractions.Fraction:
    return self.body.output_ratio

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
    shapes = {layer.name: tuple(layer.output_shape(in_shape))
              for layer in self.children()}
    if self.shortcut is None:
      shapes['identity'] = tuple(in_shape)
    if len(set(shapes.values())) != 1:
      raise ValueError(
          f'{self.name}: the branches emit frames of shapes '
          + ', '.join(f'{name} {shape}' for name, shape in shapes.items())
          + '; a sum needs one shape (e.g. a 1x1 convolution as shortcut).')
    return shapes[self.body.name]

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

  def _branch(self, layer: base.Layer | None, params: base.Params, x: Array,
              index: int, train: bool, rng: Array | None
              ) -> tuple[Array, base.Params]:
    if layer is None:
      return x, {}
    layer_rng = None if rng is None else jax.random.fold_in(rng, index)
    with jax.named_scope(layer.name):
      if train:
        return layer.apply_train(params.get(layer.name, {}), x, rng=layer_rng)
      return layer.apply(params.get(layer.name, {}), x), {}

  def _sum(self, body: Array, shortcut: Array) -> Array:
    """Crops both to their common last frames and adds them."""
    frames = min(body.shape[1], shortcut.shape[1])
    return get_activation(self.activation)(
        body[:, body.shape[1] - frames:] +
        shortcut[:, shortcut.shape[1] - frames:])

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    return self._forward(params, x, train, rng)[0]

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    return self._forward(params, x, True, rng)

  def _forward(self, params, x, train, rng):
    body, body_updates = self._branch(self.body, params, x, 0, train, rng)
    shortcut, shortcut_updates = self._branch(self.shortcut, params, x, 1,
                                              train, rng)
    updates = {}
    for layer, layer_updates in ((self.body, body_updates),
                                 (self.shortcut, shortcut_updates)):
      if layer_updates:
        updates[layer.name] = layer_updates
    return self._sum(body, shortcut), updates

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
    for layer in (self.body, self.shortcut):
      if layer is None:
        outputs.append(frame)
        continue
      with jax.named_scope(layer.name):
        layer_state, out = layer.step(params.get(layer.name, {}),
                                      state.get(layer.name, ()), frame)
      if layer.name in state:
        new_state[layer.name] = layer_state
      outputs.append(out)
    body, shortcut = outputs
    return new_state, get_activation(self.activation)(body + shortcut)
