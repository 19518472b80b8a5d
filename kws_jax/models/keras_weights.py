"""Parameters from the weights of a Keras model of the same architecture.

kws_jax keeps Keras' parameter layout (conv kernels ``[k_time, k_feat, in,
out]``, dense kernels ``[in, out]``, flatten in time-feature-channel order),
so the weights of a kws_streaming model trained with the same flags map onto
the kws_jax model one to one, in layer order:

    keras_model.load_weights('train_dir/best_weights')   # in kws_streaming
    arrays = [w.numpy() for w in keras_model.weights]
    params = params_from_keras(model, arrays)              # in kws_jax

(``keras_model.weights`` lists BatchNorm's moving statistics too; for
models without BatchNorm it equals ``trainable_weights``.)

No TensorFlow is needed here: the weights arrive as arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.models.model import Model



def params_from_keras(model: Model, weights: Sequence[Any]) -> dict[str, Any]:
  """``model``'s parameters from Keras weights listed in layer order.

  Args:
    model: the kws_jax model, built from the same configuration.
    weights: arrays (anything ``np.asarray`` takes) in Keras' order: for
      each layer with weights, in network order, its weights in the
      order of its ``keras_weight_names()``, as ``keras_model.weights`` lists them.

  Returns:
    The params pytree of ``model``, float32.

  Raises:
    ValueError: the number of arrays or a shape differs. The message names
      the kws_jax layer, the array's position in ``weights`` and both shapes.
  """
  template = jax.eval_shape(lambda: model.init(jax.random.key(0)))
  expected = list(_slots(model.net, template, ()))
  if len(weights) != len(expected):
    listing = ', '.join(f'{"/".join(path)}/{key} {tuple(shape)}'
                        for path, key, shape in expected)
    raise ValueError(f'{model.name}: got {len(weights)} Keras weight arrays, '
                     f'expected {len(expected)}: {listing}.')
  params: dict[str, Any] = {}
  for index, ((path, key, shape), array) in enumerate(zip(expected, weights)):
    array = np.asarray(array)
    if array.shape != tuple(shape):
      raise ValueError(
          f'{model.name}: Keras weight {index} has shape {array.shape}, '
          f'expected {tuple(shape)} for {"/".join(path)}/{key}. Are the '
          'weights from a model built with the same config, listed in layer '
          'order?')
    node = params
    for name in path:
      node = node.setdefault(name, {})
    node[key] = jnp.asarray(array, jnp.float32)
  return params


def _slots(layer, template: dict[str, Any], path: tuple[str, ...]):
  """``(layer path, key, shape)`` of every weight below ``layer``, in order.

  Layers made of layers (``children()``) are walked depth first, as Keras
  lists the weights of nested layers.
  """
  if layer.children():
    for child in layer.children():
      if child.name in template:
        yield from _slots(child, template[child.name], path + (child.name,))
    return
  order = layer.keras_weight_names()
  unknown = sorted(set(template) - set(order))
  if unknown:
    raise ValueError(f'{layer.name}: parameters {unknown} have no Keras '
                     f'counterpart in {order}.')
  for key in order:
    if key in template:
      yield path, key, template[key].shape
