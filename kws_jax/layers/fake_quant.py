"""Fake quantization with TFLite's int8 arithmetic (quantization-aware training).

TFLite's full-integer export (``kws_jax.export.micro``) stores

* weights as int8 per output channel, symmetric: ``scale_c = max|w_c| / 127``
  and ``q = round(w / scale_c)`` in ``[-127, 127]``;
* every activation (model inputs, tensors between ops, streaming states) as
  int8 per tensor, asymmetric, from a calibrated range ``[lo, hi]`` nudged to
  hold 0: ``scale = (hi - lo) / 255``, ``zero_point = round(-128 - lo /
  scale)`` and ``q = clip(round(x / scale) + zero_point, -128, 127)``.

Rounding is half away from zero (TFLite's ``std::round``). The functions here
return the dequantized values ``scale * (q - zero_point)``: the forward pass
sees exactly what the int8 model stores, and the gradient passes straight
through inside the range and is zero outside it, as TF's
``FakeQuantWithMinMaxVars``.

Ranges are arrays ``[lo, hi]``; ``[0, 0]`` means "not observed yet" and
passes values through unchanged. ``observe_range`` updates one from a batch
(an exponential moving average of the batch's min and max; the first batch
sets it), which is how the training form learns what the export calibrates.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

WEIGHT_LEVELS = 127  # int8 weights use [-127, 127] (symmetric)
ACTIVATION_MIN, ACTIVATION_MAX = -128, 127


def round_half_away(x: Array) -> Array:
  """``std::round``: halves go away from zero (``jnp.round`` goes to even)."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _straight_through(x: Array, quantized: Array, lo: Array,
                      hi: Array) -> Array:
  """``quantized`` forwards; the gradient is 1 inside ``[lo, hi]``, 0 outside."""
  clipped = jnp.clip(x, lo, hi)
  return clipped + jax.lax.stop_gradient(quantized - clipped)


def weight_scale(w: Array, reduce_axes: Sequence[int]) -> Array:
  """Per-channel scale ``max|w| / 127`` over ``reduce_axes`` (kept as size 1)."""
  peak = jnp.max(jnp.abs(w), axis=tuple(reduce_axes), keepdims=True)
  return jnp.where(peak > 0, peak / WEIGHT_LEVELS, 1.0)


def fake_quant_weights(w: Array, reduce_axes: Sequence[int]) -> Array:
  """``w`` as its int8 per-channel values; channels index the axes not reduced.

  ``reduce_axes=()`` would make every element its own channel; a conv kernel
  ``[kt, kf, in, out]`` reduces ``(0, 1, 2)`` (one scale per output channel).
  """
  scale = jax.lax.stop_gradient(weight_scale(w, reduce_axes))
  q = jnp.clip(round_half_away(w / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS)
  return w + jax.lax.stop_gradient(q * scale - w)


def activation_params(value_range: Array) -> tuple[Array, Array]:
  """``(scale, zero_point)`` of TFLite's int8 tensor for ``[lo, hi]``.

  The range is first widened to hold 0 (a zero padding or a ReLU's zeros
  must be exact), as TFLite's calibration nudges it.
  """
  lo = jnp.minimum(value_range[0], 0.0)
  hi = jnp.maximum(value_range[1], 0.0)
  scale = (hi - lo) / (ACTIVATION_MAX - ACTIVATION_MIN)
  scale = jnp.where(scale > 0, scale, 1.0)
  zero_point = jnp.clip(round_half_away(ACTIVATION_MIN - lo / scale),
                        ACTIVATION_MIN, ACTIVATION_MAX)
  return scale, zero_point


def fake_quant_activation(x: Array, value_range: Array) -> Array:
  """``x`` as the int8 tensor of range ``value_range`` stores it.

  A range of ``[0, 0]`` (not observed yet) returns ``x`` unchanged.
  """
  value_range = jax.lax.stop_gradient(value_range)
  scale, zero_point = activation_params(value_range)
  q = jnp.clip(round_half_away(x / scale) + zero_point, ACTIVATION_MIN,
               ACTIVATION_MAX)
  lo = (ACTIVATION_MIN - zero_point) * scale
  hi = (ACTIVATION_MAX - zero_point) * scale
  quantized = _straight_through(x, (q - zero_point) * scale, lo, hi)
  observed = value_range[1] > value_range[0]
  return jnp.where(observed, quantized, x)


def observe_range(value_range: Array, x: Array, momentum: float) -> Array:
  """``value_range`` moved toward ``[min(x), max(x)]`` (no gradient).

  ``new = momentum * old + (1 - momentum) * batch``; a range not observed
  yet (``[0, 0]``) takes the batch's.
  """
  x = jax.lax.stop_gradient(x)
  batch = jnp.stack([jnp.min(x), jnp.max(x)]).astype(value_range.dtype)
  observed = value_range[1] > value_range[0]
  return jnp.where(observed, momentum * value_range + (1 - momentum) * batch,
                   batch)


def empty_range() -> Array:
  """A range not observed yet."""
  return jnp.zeros((2,), jnp.float32)


# TFLite's int8 LOGISTIC and TANH write fixed quantizations, whatever the
# calibration saw: scale 1/256, zero point -128 ([0, 255/256]) and scale
# 1/128, zero point 0 ([-1, 127/128]).
LOGISTIC_RANGE = (0.0, 255.0 / 256.0)
TANH_RANGE = (-1.0, 127.0 / 128.0)


def sigmoid(x: Array) -> Array:
  """``sigmoid(x)`` on the grid of TFLite's int8 LOGISTIC output."""
  return fake_quant_activation(jax.nn.sigmoid(x),
                               jnp.asarray(LOGISTIC_RANGE, jnp.float32))


def tanh(x: Array) -> Array:
  """``tanh(x)`` on the grid of TFLite's int8 TANH output."""
  return fake_quant_activation(jnp.tanh(x),
                               jnp.asarray(TANH_RANGE, jnp.float32))
