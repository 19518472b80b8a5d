"""kws_streaming's DNN: frame-wise dense layers, a flattened window, dense layers.

Topology as kws_streaming's ``models/dnn.py``: Dense layers on every feature
frame (``units1``/``act1``), Flatten over the frames of one clip, max pooling
of the flattened vector (``pool_size``/``strides``; 1 disables it), Dropout,
Dense layers (``units2``/``act2``) and a linear classifier.

On speech embeddings (``frontend.name='speech_embedding'``, 2 s clips = 16
embeddings) this is openWakeWord's kind of head: a small dense network over
the last 16 embeddings (1.28 s of hops).
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models.parse import check_same_length, parse_list


def default_config() -> ml_collections.ConfigDict:
  """kws_streaming's DNN flags and defaults."""
  return ml_collections.ConfigDict({
      'name': 'dnn',
      'preprocess': 'raw',
      'label_count': 0,
      'units1': '32',
      'act1': "'relu'",
      'pool_size': 2,
      'strides': 2,
      'dropout1': 0.1,
      'units2': '256,256',
      'act2': "'relu','relu'",
      'return_softmax': False,
  })


def _dense_stack(config: ml_collections.ConfigDict, units: str, act: str,
                 prefix: str) -> list[layers.Dense]:
  lists = {units: parse_list(f'model.{units}', config[units], 'int'),
           act: parse_list(f'model.{act}', config[act], 'str')}
  check_same_length('model', lists)
  return [layers.Dense(f'{prefix}_{i}', n, a)
          for i, (n, a) in enumerate(zip(*lists.values()))]


def dnn(config: ml_collections.ConfigDict, *, frames: int, features: int,
        label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the DNN for features ``[batch, frames, features]``.

  Raises:
    ValueError: for malformed or unequal lists, or a pool larger than the
      flattened window.
  """
  del features
  head: list[layers.Layer] = [
      *_dense_stack(config, 'units1', 'act1', 'frame_dense'),
      layers.Flatten('flatten', window=frames),
  ]
  if config.pool_size > 1:
    head.append(layers.FeaturePool('pool', config.pool_size, config.strides))
  head += [
      layers.Dropout('dropout', config.dropout1),
      *_dense_stack(config, 'units2', 'act2', 'dense'),
      layers.Dense('logits', label_count),
  ]
  if config.return_softmax:
    head.append(layers.Activation('softmax', 'softmax'))
  return tuple(head)
