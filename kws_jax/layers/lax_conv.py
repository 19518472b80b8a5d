"""Valid ``lax`` convolution whose input gradient skips the zero padding.

The input gradient that autodiff derives for a valid convolution is a "full"
convolution of the output gradient, zero-padded by the dilated kernel span in
time, with the flipped kernel. Most of its multiply-accumulates then meet
zeros where the output is short: 1.45x the forward work over the paper CNN,
19x for its last layer (one output frame spread over 19 input frames).

``conv_valid`` computes the same gradient without that waste. Write the
kernel ``w [kt, kf, C, O]`` as one convolution over features only, ``w'
[1, kf, kt * C, O]``, whose input channels are the time taps. Transposing
that feature-only convolution maps the output gradient ``[B, T', F', O]``
to every tap's share of the input gradient at once, ``[B, T', F, kt * C]``
(no time padding), and tap ``i``'s share lands ``i * dilation`` frames
later: ``dx = sum_i shift(z_i, i * dilation)``. The kernel gradient is
XLA's, which ran faster than one matmul per tap, im2col or the same
feature-only form, except for layers with few kernel taps per example (see
``_kernel_gradient``; ``benchmarks/conv_grad_speed.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kws_jax.layers.im2col import im2col

Array = jax.Array

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
# Kernel taps per example up to which the kernel gradient is one matmul.
SMALL_PATCHES = 16384


def conv_valid(x: Array, kernel: Array, dilation: tuple[int, int],
               strides: tuple[int, int], groups: int = 1,
               compute_dtype: str | None = None) -> Array:
  """Valid convolution, no bias: ``[B, T, F, C] * [kt, kf, C / groups, O]``.

  Returns ``[B, T', F', O]`` in ``x``'s dtype (``compute_dtype``: the
  operands' dtype, accumulation in ``x``'s). Time stride 1 and one group use
  the padding-free input gradient; otherwise autodiff of ``lax``'s.
  """
  if strides[0] != 1 or groups != 1:
    return _lax_conv(x, kernel, dilation, strides, groups, compute_dtype)
  return _conv_valid(x, kernel, dilation, strides[1], compute_dtype)


def _lax_conv(x, kernel, dilation, strides, groups, compute_dtype):
  dtype = compute_dtype or x.dtype
  return jax.lax.conv_general_dilated(
      x.astype(dtype), kernel.astype(dtype), window_strides=strides,
      padding='VALID', rhs_dilation=dilation, dimension_numbers=_DIMENSIONS,
      feature_group_count=groups, preferred_element_type=x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_valid(x, kernel, dilation, feature_stride, compute_dtype):
  return _lax_conv(x, kernel, dilation, (1, feature_stride), 1, compute_dtype)


def _forward(x, kernel, dilation, feature_stride, compute_dtype):
  y = _lax_conv(x, kernel, dilation, (1, feature_stride), 1, compute_dtype)
  return y, (x, kernel)


def _backward(dilation, feature_stride, compute_dtype, residuals, grad):
  x, kernel = residuals
  if kernel.shape[:2] == (1, 1) and feature_stride == 1:
    return _pointwise_gradients(grad, x, kernel, compute_dtype)
  if kernel.shape[1] > 1 or x.shape[1] >= 2 * grad.shape[1]:
    grad_x = _input_gradient(grad, kernel, x.shape, dilation, feature_stride,
                             compute_dtype)
  else:
    # A kernel one feature wide gains less than the shifted shares cost
    # unless most of autodiff's work would meet padding.
    _, input_vjp = jax.vjp(
        lambda u: _lax_conv(u, kernel, dilation, (1, feature_stride), 1,
                            compute_dtype), x)
    (grad_x,) = input_vjp(grad)
  return grad_x, _kernel_gradient(grad, x, kernel, dilation, feature_stride,
                                  compute_dtype)


def _pointwise_gradients(grad: Array, x: Array, kernel: Array,
                         compute_dtype: str | None) -> tuple[Array, Array]:
  """Gradients of a 1x1 convolution, a matmul over the channels.

  XLA's kernel gradient of a convolution transposes the input to put the
  batch last, a layout copy that took 750 ms of the DS-CNN's 3.1 s gradient
  (its pointwise convolutions over 300 channels); as matmuls nothing is
  transposed: ``dx = g W^T``, ``dW = x^T g`` over all positions.
  """
  dtype = compute_dtype or x.dtype
  weights = kernel[0, 0].astype(dtype)  # [C, O]
  grad_x = jnp.matmul(grad.astype(dtype), weights.T,
                      preferred_element_type=x.dtype)
  grad_kernel = jax.lax.dot_general(
      x.reshape(-1, x.shape[-1]).astype(dtype),
      grad.reshape(-1, grad.shape[-1]).astype(dtype),
      (((0,), (0,)), ((), ())), preferred_element_type=kernel.dtype)
  return grad_x, grad_kernel.reshape(kernel.shape)


def _kernel_gradient(grad: Array, x: Array, kernel: Array,
                     dilation: tuple[int, int], feature_stride: int,
                     compute_dtype: str | None) -> Array:
  """``[B, T', F', O]`` -> ``[kt, kf, C, O]``.

  XLA's convolution, except where the kernel taps of one example are few
  (``SMALL_PATCHES`` values: a first layer of one channel, a last layer of
  one output frame): there the taps, gathered by im2col, times the output
  gradient is one matmul and runs 2-5x faster.
  """
  k_time, k_feature, channels, filters = kernel.shape
  taps = grad.shape[1] * grad.shape[2] * k_time * k_feature * channels
  if taps > SMALL_PATCHES:
    _, kernel_vjp = jax.vjp(
        lambda k: _lax_conv(x, k, dilation, (1, feature_stride), 1,
                            compute_dtype), kernel)
    return kernel_vjp(grad)[0]
  dtype = compute_dtype or x.dtype
  patches = im2col(x.astype(dtype), (k_time, k_feature), dilation,
                   feature_stride)
  patches = patches.reshape(-1, patches.shape[-1])
  return jnp.matmul(patches.T, grad.reshape(-1, filters).astype(dtype),
                    preferred_element_type=kernel.dtype).reshape(kernel.shape)


def _input_gradient(grad: Array, kernel: Array, x_shape: tuple[int, ...],
                    dilation: tuple[int, int], feature_stride: int,
                    compute_dtype: str | None) -> Array:
  """``[B, T', F', O]`` -> ``[B, T, F, C]`` without convolving over padding."""
  k_time, k_feature, channels, filters = kernel.shape
  batch, time, features, _ = x_shape
  time_out = grad.shape[1]
  # Feature-only kernel whose input channels are (time tap, channel).
  taps_kernel = kernel.transpose(1, 0, 2, 3).reshape(
      1, k_feature, k_time * channels, filters)
  taps_shape = jax.ShapeDtypeStruct(
      (batch, time_out, features, k_time * channels), grad.dtype)
  transpose = jax.linear_transpose(
      lambda u: _lax_conv(u, taps_kernel, (1, dilation[1]),
                          (1, feature_stride), 1, compute_dtype), taps_shape)
  (shares,) = transpose(grad)
  shares = shares.reshape(batch, time_out, features, k_time, channels)
  return sum(
      jnp.pad(shares[:, :, :, i],
              ((0, 0), (i * dilation[0], time - time_out - i * dilation[0]),
               (0, 0), (0, 0)))
      for i in range(k_time))


_conv_valid.defvjp(_forward, _backward)
