"""kws_streaming's SVDF ResNet: three residual blocks of SVDF layers.

Topology as kws_streaming's ``models/svdf_resnet.py``. Block ``k`` (1 to 3)
is a ``Residual`` (``block_<k>``) whose body holds one ``Svdf`` per entry of
``block<k>_units1`` / ``block<k>_memory_size`` (``svdf_<k>_<i>``: no second
projection, BatchNorm if ``use_batch_norm``, ``activation`` on all but the
last, which is linear) and whose shortcut is a Dense of the body's last
``units1`` without bias and a BatchNorm (a 1x1 convolution); the sum goes
through ``activation`` and a max pooling over ``blocks_pool[k - 1]`` frames
in time with the same stride. The head averages over the frames left of one
clip (``flatten=0``, kws_streaming's ``Stream(AveragePooling2D)``) or
flattens them (``flatten=1``), then Dropout, Dense layers (``units2``, with
``activation``) and the classifier.

Streaming: every pool of ``p`` frames makes the blocks after it run once per
``p`` frames, so a step of the model takes the product of the pools in
frames. With causal SVDFs (``svdf_pad=1``, kws_streaming's default) nothing
before a pool has warm-up frames; raw audio needs the frontend's
``padding='semicausal'`` for the same reason (see
``experiments/configs/svdf_resnet.py``). With valid SVDFs the shortcut is
cropped to the frames the body emits (``Residual``), where kws_streaming's
``Add`` would fail on unequal lengths.
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models.parse import check_same_length, parse_list
from kws_jax.models.svdf import (
    check_frames_left, check_memory_sizes, svdf_padding)

BLOCKS = 3


def default_config() -> ml_collections.ConfigDict:
  """kws_streaming's SVDF ResNet flags and defaults (``svdf_resnet.py``)."""
  return ml_collections.ConfigDict({
      'name': 'svdf_resnet',
      'preprocess': 'raw',
      'label_count': 0,
      'block1_memory_size': '4,10',
      'block2_memory_size': '10,10',
      'block3_memory_size': '10,10',
      'block1_units1': '256,256',
      'block2_units1': '256,256',
      'block3_units1': '256,256',
      'blocks_pool': '1,2,2',
      'use_batch_norm': 1,
      'bn_scale': 0,
      'activation': 'relu',
      'svdf_dropout': 0.0,
      'svdf_use_bias': 1,
      'svdf_pad': 1,
      'dropout1': 0.0,
      'units2': '',
      'flatten': 0,
      'return_softmax': False,
  })


def _check_flag(field: str, value) -> bool:
  if value not in (0, 1):
    raise ValueError(f'model.{field} is {value!r}, expected 0 or 1.')
  return bool(value)


def svdf_resnet(config: ml_collections.ConfigDict, *, frames: int,
                features: int, label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the SVDF ResNet for features ``[batch, frames, features]``.

  Raises:
    ValueError: for malformed or unequal lists, an empty block, a memory
      size or pool below 1, ``blocks_pool`` without 3 entries, a dropout
      rate outside [0, 1), flags other than 0 or 1, or blocks and pools
      that leave no frame of the clip.
  """
  del features
  pools = parse_list('model.blocks_pool', config.blocks_pool, 'int')
  if len(pools) != BLOCKS or any(pool < 1 for pool in pools):
    raise ValueError(f'model.blocks_pool is {config.blocks_pool!r}, expected '
                     f'{BLOCKS} pool sizes >= 1 (one per residual block).')
  padding = svdf_padding(config.svdf_pad)
  use_batch_norm = _check_flag('use_batch_norm', config.use_batch_norm)
  bn_scale = _check_flag('bn_scale', config.bn_scale)
  use_bias = _check_flag('svdf_use_bias', config.svdf_use_bias)
  flatten = _check_flag('flatten', config.flatten)
  units2 = parse_list('model.units2', config.units2, 'int')
  if not 0.0 <= config.svdf_dropout < 1.0:
    raise ValueError(f'model.svdf_dropout is {config.svdf_dropout!r}, '
                     'expected a dropout rate with 0 <= rate < 1.')

  body: list[layers.Layer] = []
  for k, pool in enumerate(pools, start=1):
    block = {
        f'block{k}_units1': parse_list(f'model.block{k}_units1',
                                       config[f'block{k}_units1'], 'int'),
        f'block{k}_memory_size': parse_list(
            f'model.block{k}_memory_size', config[f'block{k}_memory_size'],
            'int'),
    }
    check_same_length('model', block)
    units, memory_sizes = block.values()
    if not units:
      raise ValueError(f'model.block{k}_units1 is empty, expected at least '
                       f'one SVDF layer in residual block {k}.')
    check_memory_sizes(f'model.block{k}_memory_size', memory_sizes)
    frames = check_frames_left(f'model.block{k}_memory_size', memory_sizes,
                               padding, frames)
    if frames < pool:
      raise ValueError(
          f'model.blocks_pool is {config.blocks_pool!r}: residual block {k} '
          f'leaves {frames} frames of one clip, expected at least its pool '
          f'of {pool}. Use smaller pools or memory sizes, or a longer clip.')
    frames //= pool
    activations = [config.activation] * (len(units) - 1) + ['linear']
    svdfs = layers.Sequential('svdfs', tuple(
        layers.Svdf(f'svdf_{k}_{i}', units1, memory_size, units2=-1,
                    activation=act, use_bias=use_bias,
                    dropout=config.svdf_dropout,
                    use_batch_norm=use_batch_norm, bn_scale=bn_scale,
                    time_padding=padding)
        for i, (units1, memory_size, act) in enumerate(
            zip(units, memory_sizes, activations))))
    shortcut = layers.Sequential('shortcut', (
        layers.Dense('dense', units[-1], use_bias=False),
        layers.BatchNorm('batch_norm', scale=bn_scale)))
    body.append(layers.Residual(f'block_{k}', svdfs, shortcut,
                                activation=config.activation))
    if pool > 1:
      body.append(layers.Pool2D(f'max_pool_{k}', (pool, 1), strides=(pool, 1),
                                kind='max'))
  if flatten:
    body.append(layers.Flatten('flatten', window=frames))
  else:
    body.append(layers.Pool2D('average_pool', (frames, 1), strides=(1, 1),
                              kind='average'))
  body.append(layers.Dropout('dropout', config.dropout1))
  body += [layers.Dense(f'dense_{i}', units, config.activation)
           for i, units in enumerate(units2)]
  body.append(layers.Dense('logits', label_count))
  if config.return_softmax:
    body.append(layers.Activation('softmax', 'softmax'))
  return tuple(body)
