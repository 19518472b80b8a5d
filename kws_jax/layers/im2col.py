"""Valid 2-D convolution as shifted slices and one matmul, with a matching VJP.

XLA:CPU runs ``lax.conv_general_dilated`` slowly, while a large matmul runs
near the machine's peak. ``conv_valid`` therefore gathers the kernel taps of
every output position with shifted slices (im2col) and multiplies once. With
bfloat16 inputs a custom VJP keeps every matmul in that fast form: the kernel
gradient is ``patches^T @ grad`` and the input gradient is the same im2col
convolution of the (zero-upsampled, padded) output gradient with the flipped
kernel, instead of a thin matmul followed by a scatter of the patches.

With ``compute_dtype='bfloat16'`` the patches and all three matmuls use
bfloat16 inputs with float32 accumulation (mixed precision); parameters,
activations between layers and gradients stay float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def im2col(x: Array, kernel_size: tuple[int, int], dilation: tuple[int, int],
           feature_stride: int, time_stride: int = 1) -> Array:
  """Kernel taps of a valid convolution, as channels.

  Args:
    x: ``[batch, time, feature, channels]``.
    kernel_size, dilation: ``(time, feature)`` pairs.
    feature_stride, time_stride: strides in the two axes.

  Returns:
    ``[batch, time_out, feature_out, k_time * k_feat * channels]`` with taps
    ordered (time, feature, channel), matching a Keras kernel reshaped to
    ``[k_time * k_feat * channels, filters]``.
  """
  time_out = (x.shape[1] - dilation[0] * (kernel_size[0] - 1) - 1
              ) // time_stride + 1
  feature_out = (x.shape[2] - dilation[1] * (kernel_size[1] - 1) - 1
                 ) // feature_stride + 1
  taps = []
  for i in range(kernel_size[0]):
    t0 = i * dilation[0]
    for j in range(kernel_size[1]):
      f0 = j * dilation[1]
      taps.append(x[:, t0:t0 + (time_out - 1) * time_stride + 1:time_stride,
                    f0:f0 + (feature_out - 1) * feature_stride + 1:
                    feature_stride])
  return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)


def _matmul(a: Array, b: Array, compute_dtype) -> Array:
  return jnp.matmul(a.astype(compute_dtype), b.astype(compute_dtype),
                    preferred_element_type=jnp.float32)


def conv_valid(x: Array, kernel: Array, dilation: tuple[int, int],
               feature_stride: int, compute_dtype: str | None,
               time_stride: int = 1) -> Array:
  """Valid convolution, no bias: ``[B, T, F, C] * [kt, kf, C, O] -> [B, T', F', O]``.

  Strides ``time_stride`` and ``feature_stride``; float32 output. In
  float32, autodiff of the im2col forward pass is the faster backward pass
  on XLA:CPU (120 vs 92 examples/s for the paper CNN); with bfloat16 inputs
  the custom VJP is (113 vs 86), as autodiff would run its matmuls in float32.
  The custom VJP handles time stride 1; strided in time, autodiff runs.
  """
  if time_stride != 1:
    dtype = compute_dtype or x.dtype
    patches = im2col(x.astype(dtype), kernel.shape[:2], dilation,
                     feature_stride, time_stride)
    return _matmul(patches, kernel.reshape(-1, kernel.shape[-1]),
                   dtype).astype(x.dtype)
  if compute_dtype is None:
    return _conv_forward(x, kernel, dilation, feature_stride, None)[0]
  return _conv_valid_mixed(x, kernel, dilation, feature_stride, compute_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_valid_mixed(x: Array, kernel: Array, dilation: tuple[int, int],
                      feature_stride: int, compute_dtype: str) -> Array:
  return _conv_forward(x, kernel, dilation, feature_stride, compute_dtype)[0]


def _conv_forward(x, kernel, dilation, feature_stride, compute_dtype):
  dtype = compute_dtype or x.dtype
  patches = im2col(x.astype(dtype), kernel.shape[:2], dilation, feature_stride)
  y = _matmul(patches, kernel.reshape(-1, kernel.shape[-1]), dtype)
  return y.astype(x.dtype), patches


def _conv_fwd(x, kernel, dilation, feature_stride, compute_dtype):
  y, patches = _conv_forward(x, kernel, dilation, feature_stride,
                             compute_dtype)
  return y, (patches, kernel, x.shape)


def _conv_bwd(dilation, feature_stride, compute_dtype, residuals, grad):
  patches, kernel, x_shape = residuals
  dtype = compute_dtype or grad.dtype
  kt, kf, channels, filters = kernel.shape
  # Kernel: contract the patches with the output gradient over all positions.
  grad_kernel = jnp.einsum(
      'btfk,btfo->ko', patches, grad.astype(dtype),
      preferred_element_type=jnp.float32).reshape(kernel.shape)
  # Input: full correlation of the output gradient with the flipped kernel.
  upsampled = _upsample_features(grad, feature_stride)
  pad_time = dilation[0] * (kt - 1)
  pad_feature = dilation[1] * (kf - 1)
  upsampled = jnp.pad(upsampled, (
      (0, 0), (pad_time, pad_time),
      (pad_feature, x_shape[2] - upsampled.shape[2]), (0, 0)))
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)  # [kt, kf, O, C]
  grad_patches = im2col(upsampled.astype(dtype), (kt, kf), dilation, 1)
  grad_x = _matmul(grad_patches, flipped.reshape(-1, channels), dtype)
  return grad_x.astype(grad.dtype), grad_kernel.astype(kernel.dtype)


def _upsample_features(grad: Array, stride: int) -> Array:
  """Puts ``stride - 1`` zeros between feature positions (transpose of striding)."""
  if stride == 1:
    return grad
  batch, time, features, channels = grad.shape
  zeros = jnp.zeros((batch, time, features, stride - 1, channels), grad.dtype)
  spread = jnp.concatenate([grad[:, :, :, None], zeros], axis=3)
  spread = spread.reshape(batch, time, features * stride, channels)
  return spread[:, :, :(features - 1) * stride + 1]


_conv_valid_mixed.defvjp(_conv_fwd, _conv_bwd)
