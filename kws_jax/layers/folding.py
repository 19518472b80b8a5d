"""Folds inference-time BatchNorm into the convolution or dense layer before it.

At inference a ``BatchNorm`` is ``y * scale + offset`` per channel
(``BatchNorm.affine``). After a layer with a linear activation that computes
``y = conv(x, kernel) + bias`` this is the same layer with ``kernel * scale``
(per output channel) and ``bias * scale + offset``, so the export drops the
norm and its multiply-add (and int8 models lose one rounding step per norm).

    folded_net, folded_params = fold_batch_norms(net, params)

Layers keep their names, so params, streaming state and export names stay
keyed as before; a norm that does not follow a foldable layer stays.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from kws_jax.layers import base, tree
from kws_jax.layers.conv import Conv2D, DepthwiseConv2D
from kws_jax.layers.core import Dense
from kws_jax.layers.normalization import BatchNorm
from kws_jax.layers.sequential import Sequential

# Layers whose last kernel axis (or, for depthwise kernels, its last two
# axes flattened) is the output channel.
FOLDABLE = (Conv2D, DepthwiseConv2D, Dense)


def fold_batch_norms(layer: base.Layer, params: base.Params
                     ) -> tuple[base.Layer, base.Params]:
  """``(layer, params)`` with every foldable BatchNorm folded; same outputs.

  Walks the tree: in a ``Sequential``, a ``BatchNorm`` right after a
  ``FOLDABLE`` layer with a linear activation is folded into it and removed;
  other layers made of layers are rebuilt with their children folded.
  """
  if isinstance(layer, Sequential):
    return _fold_sequence(layer, params)
  return tree.rebuild(layer, params, fold_batch_norms)


def _fold_sequence(stack: Sequential, params: base.Params
                   ) -> tuple[Sequential, base.Params]:
  layers: list[base.Layer] = []
  new_params: dict[str, Any] = {}
  for layer in stack.layers:
    layer_params = params.get(layer.name, {})
    previous = layers[-1] if layers else None
    if (isinstance(layer, BatchNorm) and isinstance(previous, FOLDABLE) and
        previous.activation == 'linear'):
      folded = fold_into(previous, new_params.get(previous.name, {}), layer,
                         layer_params)
      layers[-1] = dataclasses.replace(previous, use_bias=True)
      new_params[previous.name] = folded
      continue
    layer, layer_params = fold_batch_norms(layer, layer_params)
    layers.append(layer)
    if layer_params:
      new_params[layer.name] = layer_params
  return dataclasses.replace(stack, layers=tuple(layers)), new_params


def fold_into(layer: base.Layer, params: base.Params, norm: BatchNorm,
              norm_params: base.Params) -> base.Params:
  """Params of ``layer`` followed by ``norm`` (inference form) as one layer."""
  scale, offset = norm.affine(norm_params)
  key = 'depthwise_kernel' if isinstance(layer, DepthwiseConv2D) else 'kernel'
  kernel = params[key]
  channels = kernel.shape[-1] * (kernel.shape[-2] if key ==
                                 'depthwise_kernel' else 1)
  if channels != scale.shape[0]:
    raise ValueError(f'{norm.name}: normalizes {scale.shape[0]} channels, but '
                     f'{layer.name} before it emits {channels}.')
  folded = dict(params)
  folded[key] = kernel * scale.reshape(kernel.shape[-2:] if key ==
                                       'depthwise_kernel' else (-1,))
  bias = params.get('bias', jnp.zeros_like(scale))
  folded['bias'] = bias * scale + offset
  return folded
