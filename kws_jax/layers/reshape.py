"""FrameReshape: gives every frame a new shape of the same size (frame-wise)."""

from __future__ import annotations

import dataclasses
import math

import jax

from kws_jax.layers import base

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FrameReshape(base.Layer):
  """Reshapes frames: ``[batch, time, *in_shape]`` -> ``[batch, time, *shape]``.

  As Keras' ``Reshape(shape)`` applied to one frame (row-major order, so
  ``(features,)`` -> ``(1, features)`` is kws_streaming's
  ``expand_dims(net, axis=2)``: ``[batch, time, feature]`` ->
  ``[batch, time, 1, feature]``, the features becoming channels).
  ``prod(shape)`` must equal ``prod(in_shape)``.

  Streaming: stateless and frame-wise (``block_size`` 1, ``lookback`` 0): a
  step reshapes the frames it is given, as the full-window form does.
  """

  name: str
  shape: tuple[int, ...]

  def __post_init__(self):
    if (not isinstance(self.shape, tuple) or not self.shape or
        not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                for d in self.shape)):
      raise ValueError(
          f'{self.name}: shape is {self.shape!r}, expected a non-empty tuple '
          'of positive ints (the shape of one output frame).')

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if math.prod(in_shape) != math.prod(self.shape):
      raise ValueError(
          f'{self.name}: frames of shape {tuple(in_shape)} '
          f'({math.prod(in_shape)} values) cannot become frames of shape '
          f'{self.shape} ({math.prod(self.shape)} values); expected frames of '
          f'{math.prod(self.shape)} values.')
    return self.shape

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    if x.ndim < 2:
      raise ValueError(f'{self.name}: input has shape {tuple(x.shape)}, '
                       'expected [batch, time, ...].')
    self.output_shape(tuple(x.shape[2:]))
    return x.reshape(*x.shape[:2], *self.shape)
