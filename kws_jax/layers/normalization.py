"""BatchNorm: batch statistics while training, running statistics otherwise."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from kws_jax.layers import base

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BatchNorm(base.Layer):
  """Keras' ``BatchNormalization`` over the last axis of ``[batch, time, ..., C]``.

  Params in Keras' order: ``gamma``, ``beta`` (trainable, as ``scale`` and
  ``center`` allow), ``moving_mean`` and ``moving_variance`` (updated by
  ``apply_train``, left alone by the optimizer: see
  ``base.trainable_mask``). ``apply_train`` normalizes with the statistics
  of the batch over every axis but the channels and returns the new running
  statistics ``momentum * old + (1 - momentum) * batch``; ``apply`` and
  ``step`` use the running statistics, a per-channel affine map of each frame
  (stateless; the export folds it into the layer before it).
  """

  name: str
  momentum: float = 0.99
  epsilon: float = 1e-3
  center: bool = True
  scale: bool = True

  def __post_init__(self):
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f'{self.name}: momentum is {self.momentum!r}, expected '
                       '0 <= momentum < 1.')
    if not self.epsilon > 0:
      raise ValueError(f'{self.name}: epsilon is {self.epsilon!r}, expected a '
                       'positive float.')

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    del rng
    if not in_shape:
      raise ValueError(f'{self.name}: frames have shape (), expected a '
                       'channel axis.')
    channels = in_shape[-1]
    params = {}
    if self.scale:
      params['gamma'] = jnp.ones((channels,), jnp.float32)
    if self.center:
      params['beta'] = jnp.zeros((channels,), jnp.float32)
    params['moving_mean'] = jnp.zeros((channels,), jnp.float32)
    params['moving_variance'] = jnp.ones((channels,), jnp.float32)
    return params

  def affine(self, params: base.Params) -> tuple[Array, Array]:
    """``(scale, offset)`` per channel of the inference form: ``x * scale + offset``."""
    scale = jax.lax.rsqrt(params['moving_variance'] + self.epsilon)
    if self.scale:
      scale = scale * params['gamma']
    offset = -params['moving_mean'] * scale
    if self.center:
      offset = offset + params['beta']
    return scale, offset

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    if train:
      return self.apply_train(params, x, rng=rng)[0]
    self._check_channels(params, x)
    scale, offset = self.affine(params)
    return x * scale.astype(x.dtype) + offset.astype(x.dtype)

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    del rng
    self._check_channels(params, x)
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    variance = jnp.mean(jnp.square(x - mean), axis=axes)
    y = (x - mean) * jax.lax.rsqrt(variance + self.epsilon)
    if self.scale:
      y = y * params['gamma']
    if self.center:
      y = y + params['beta']
    keep = self.momentum
    updates = {
        'moving_mean': jax.lax.stop_gradient(
            keep * params['moving_mean'] + (1 - keep) * mean),
        'moving_variance': jax.lax.stop_gradient(
            keep * params['moving_variance'] + (1 - keep) * variance),
    }
    return y, updates

  def _check_channels(self, params: base.Params, x: Array) -> None:
    channels = params['moving_mean'].shape[0]
    if x.shape[-1] != channels:
      raise ValueError(f'{self.name}: input has {x.shape[-1]} channels, '
                       f'expected {channels}.')
