"""SubSpectralNorm: BatchNorm with statistics per frequency sub-group, channel.

After "SubSpectral Normalization for Neural Audio Data Processing" (Chang et
al. 2021), as kws_streaming's ``layers/sub_spectral_normalization.py``
computes it: frames ``(F, C)`` are reshaped (row-major, as Keras'
``Reshape``) to ``(F / G, C * G)`` for ``G = sub_groups``, normalized by a
``BatchNormalization`` over the ``C * G`` channels and reshaped back.
Feature ``f`` and channel ``c`` thus use the statistics at index
``(f % G) * C + c``: sub-group ``f % G``, i.e. the features are interleaved
into the groups (every ``G``-th feature shares statistics), not cut into
contiguous bands. Keeping kws_streaming's layout keeps its weights
loadable as they are.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.normalization import BatchNorm

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SubSpectralNorm(base.Layer):
  """BatchNorm over ``sub_groups`` interleaved sub-bands of ``[B, T, F, C]``.

  Shapes: ``[batch, time, F, C]`` -> the same, ``F`` a multiple of
  ``sub_groups``. Params in Keras' order, each ``[sub_groups * C]`` and
  indexed ``(f % sub_groups) * C + c``: ``gamma``, ``beta`` (as ``scale`` /
  ``center`` allow), ``moving_mean``, ``moving_variance`` (non-trainable:
  ``base.NON_TRAINABLE``). ``sub_groups=1`` is a plain BatchNorm over ``C``.

  ``apply_train`` normalizes with the batch statistics over (batch, time,
  ``F / sub_groups``) of each sub-group and channel and returns the new
  running statistics ``momentum * old + (1 - momentum) * batch``. ``apply``
  and ``step`` use the running statistics: a fixed affine map per (feature,
  channel) of each frame. Frame-wise and stateless: ``lookback`` 0, a step
  is its full-window form applied to the frames.
  """

  name: str
  sub_groups: int
  momentum: float = 0.99
  epsilon: float = 1e-3
  center: bool = True
  scale: bool = True

  def __post_init__(self):
    base.check_positive_int(self.name, 'sub_groups', self.sub_groups)
    _ = self._norm  # checks momentum and epsilon

  @property
  def _norm(self) -> BatchNorm:
    """The BatchNorm over the ``sub_groups * C`` regrouped channels."""
    return BatchNorm(self.name, momentum=self.momentum, epsilon=self.epsilon,
                     center=self.center, scale=self.scale)

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) != 2:
      raise ValueError(f'{self.name}: frames have shape {tuple(in_shape)}, '
                       'expected (feature, channels).')
    if in_shape[0] % self.sub_groups:
      raise ValueError(
          f'{self.name}: sub_groups is {self.sub_groups}, expected a divisor '
          f'of the {in_shape[0]} features of its input frames '
          f'{tuple(in_shape)}.')
    return tuple(in_shape)

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    _, channels = self.output_shape(in_shape)
    return self._norm.init(rng, (self.sub_groups * channels,))

  def _grouped(self, x: Array) -> Array:
    """``[B, T, F, C]`` -> ``[B, T, F / G, G * C]`` (as Keras' Reshape)."""
    base.check_rank(self.name, x, 2)
    self.output_shape(x.shape[2:])
    batch, time, features, channels = x.shape
    return x.reshape(batch, time, features // self.sub_groups,
                     self.sub_groups * channels)

  def _check_channels(self, params: base.Params, channels: int) -> None:
    expected = params['moving_mean'].shape[0]
    if self.sub_groups * channels != expected:
      raise ValueError(
          f'{self.name}: input has {channels} channels, expected '
          f'{expected // self.sub_groups} (statistics of {expected} = '
          f'sub_groups {self.sub_groups} x channels).')

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    if train:
      return self.apply_train(params, x, rng=rng)[0]
    base.check_rank(self.name, x, 2)
    self.output_shape(x.shape[2:])
    features, channels = x.shape[2:]
    self._check_channels(params, channels)
    # [G * C] -> [F, C]: row f holds sub-group f % G (no reshape of x, so the
    # export is a multiply-add).
    scale, offset = (
        jnp.tile(v.reshape(self.sub_groups, channels),
                 (features // self.sub_groups, 1)).astype(x.dtype)
        for v in self._norm.affine(params))
    return x * scale + offset

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    grouped = self._grouped(x)
    self._check_channels(params, x.shape[-1])
    y, updates = self._norm.apply_train(params, grouped, rng=rng)
    return y.reshape(x.shape), updates
