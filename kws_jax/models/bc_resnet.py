"""kws_streaming's BC-ResNet: broadcasted residual learning (Kim et al. 2021).

Topology as kws_streaming's ``models/bc_resnet.py``: a 5x5 Conv2D with
feature stride 2 (``first_filters``), then per stage a TransitionBlock and
``blocks_n`` NormalBlocks of ``filters`` channels, optional pooling in time
(``pools``), a 5x5 DepthwiseConv2D, the mean over frequency, a 1x1 Conv2D
(``last_filters``), the average over the clip's frames and a 1x1 Conv2D to
the logits. No layer has a time stride unless ``strides`` or ``pools`` ask
for one.

A TransitionBlock is a 1x1 Conv2D (``strides``) + BatchNorm + relu and a
``BroadcastResidual`` without identity; a NormalBlock is a
``BroadcastResidual`` with identity. Their frequency branch is a (1, 3)
DepthwiseConv2D ('same' in frequency) + ``SubSpectralNorm(sub_groups)``,
their temporal branch the mean over frequency, a (3, 1) DepthwiseConv2D
(``dilations``, causal in time) + BatchNorm + swish, a 1x1 Conv2D and
``SpatialDropout`` (``dropouts``).

Time padding: kws_streaming's ``paddings`` is 'same' (non-causal: kernels
read future frames, so the model cannot stream and there is no exact
streaming equivalent) or 'causal'; only 'causal' is accepted. Frequency
padding is 'same' everywhere (it reads no future frames). On raw audio, give
the frontend ``padding='semicausal'``: with 'valid' framing its stream starts
with warm-up frames, which the causal convolutions would read where their
full-window form reads zero padding, so the stack refuses it.

Weights: ``params_from_keras`` walks the layers in the order they compute
(per block: conv1x1_1, batch_norm1, frequency_dw_conv, spectral_norm,
temporal_dw_conv, batch_norm2, conv1x1_2), each layer's weights in Keras'
order, as a Keras 3 functional model of the same layers lists them.
kws_streaming's blocks are nested Keras layers: under tf.keras 2 a block
lists the trainable weights of its sublayers (in attribute order) before
their moving statistics, so its checkpoints need that reordering first.
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models import cnn
from kws_jax.models.parse import check_same_length, parse_list

PADDINGS = ('causal',)


def default_config() -> ml_collections.ConfigDict:
  """kws_streaming's bc_resnet flags and defaults, with causal time padding.

  kws_streaming's default ``paddings`` is 'same', which cannot stream; its
  streaming BC-ResNets are trained with ``--paddings 'causal'``, the default
  here. The other defaults are kws_streaming's (BC-ResNet-1 widths).
  """
  return ml_collections.ConfigDict({
      'name': 'bc_resnet',
      'preprocess': 'raw',  # 'raw': audio in, frontend inside; 'mfcc'
      'label_count': 0,  # 0: from data.wanted_words (+ silence, unknown)
      'dropouts': '0.5, 0.5, 0.5, 0.5',
      'filters': '8, 12, 16, 20',
      'blocks_n': '2, 2, 4, 4',
      'strides': '(1,1),(1,2),(1,2),(1,1)',
      'dilations': '(1,1), (2,1), (3,1), (3,1)',
      'paddings': 'causal',
      'first_filters': 16,
      'last_filters': 32,
      'sub_groups': 5,
      'pools': '1, 1, 1, 1',
      'max_pool': 0,  # 0: average pooling in time, 1: max pooling
      'return_softmax': False,
      # Speed knob (same parameters and math), as ds_cnn's.
      'conv_implementation': 'auto',
  })


def _check_int(field: str, value, minimum: int) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f'model.{field} is {value!r}, expected an int >= '
                     f'{minimum}.')


def _check_config(config: ml_collections.ConfigDict) -> dict[str, list]:
  """The parsed per-stage lists; raises naming field, value and expectation."""
  if config.paddings not in PADDINGS:
    raise ValueError(
        f'model.paddings is {config.paddings!r}, expected \'causal\': '
        '\'same\' padding in time reads future frames (half of every kernel '
        'in time), so the model could not stream and no delay makes its '
        'residual sums streamable exactly.')
  for field, minimum in (('first_filters', 1), ('last_filters', 1),
                         ('sub_groups', 1)):
    _check_int(field, config[field], minimum)
  if config.max_pool not in (0, 1):
    raise ValueError(f'model.max_pool is {config.max_pool!r}, expected 0 '
                     '(average pooling) or 1 (max pooling).')
  lists = {
      'blocks_n': parse_list('model.blocks_n', config.blocks_n, 'int'),
      'filters': parse_list('model.filters', config.filters, 'int'),
      'dilations': parse_list('model.dilations', config.dilations, 'pair'),
      'strides': parse_list('model.strides', config.strides, 'pair'),
      'dropouts': parse_list('model.dropouts', config.dropouts, 'float'),
      'pools': parse_list('model.pools', config.pools, 'int'),
  }
  check_same_length('model', lists)
  for field, minimum in (('blocks_n', 0), ('filters', 1), ('pools', 1)):
    for index, value in enumerate(lists[field]):
      if value < minimum:
        raise ValueError(f'model.{field}[{index}] is {value}, expected an int '
                         f'>= {minimum}.')
  for index, value in enumerate(lists['dropouts']):
    if not 0.0 <= value < 1.0:
      raise ValueError(f'model.dropouts[{index}] is {value}, expected 0 <= '
                       'rate < 1.')
  return lists


def _check_sub_groups(sub_groups: int, before: list[int],
                      stage_features: list[int], strides: list) -> None:
  """Every SubSpectralNorm's features must split into ``sub_groups`` groups.

  ``before``: the input features and those after the first convolution.
  """
  for stage, count in enumerate(stage_features):
    if count % sub_groups:
      chain = ' -> '.join(map(str, [*before, *stage_features]))
      raise ValueError(
          f'model.sub_groups is {sub_groups}, expected a divisor of the '
          f'features every SubSpectralNorm sees, but stage {stage} '
          f'(model.strides[{stage}] = {strides[stage]}) has {count}: '
          f'features {chain} (input, after the first convolution\'s feature '
          'stride 2, then after each stage\'s stride).')


def _frequency_branch(dilation, sub_groups: int, depthwise: str
                      ) -> layers.Sequential:
  return layers.Sequential('frequency', (
      layers.DepthwiseConv2D('frequency_dw_conv', (1, 3), dilation=dilation,
                             time_padding='causal', feature_padding='same',
                             use_bias=False, implementation=depthwise),
      layers.SubSpectralNorm('spectral_norm', sub_groups),
  ))


def _temporal_branch(filters: int, dilation, dropout: float, depthwise: str,
                     conv: str, names: tuple[str, str]) -> layers.Sequential:
  norm_name, conv_name = names
  return layers.Sequential('temporal', (
      layers.FeatureMean('feature_mean'),
      layers.DepthwiseConv2D('temporal_dw_conv', (3, 1), dilation=dilation,
                             time_padding='causal', feature_padding='same',
                             use_bias=False, implementation=depthwise),
      layers.BatchNorm(norm_name),
      layers.Activation('swish', 'swish'),
      layers.Conv2D(conv_name, filters, (1, 1), use_bias=False,
                    implementation=conv),
      layers.SpatialDropout('spatial_drop', dropout),
  ))


def bc_resnet(config: ml_collections.ConfigDict, *, frames: int, features: int,
              label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the BC-ResNet for features ``[batch, frames, features]``.

  Args:
    config: the model section (see ``default_config``).
    frames: feature frames in one clip; the time average covers what the
      layers leave of them.
    features: features per frame.
    label_count: number of classes.

  Returns:
    The layers, from features ``[batch, time, features]`` to logits
    ``[batch, time_out, label_count]``.

  Raises:
    ValueError: for lists of unequal length or malformed entries, 'same'
      time padding, a ``sub_groups`` that does not divide the features of
      every block, or kernels that do not fit the input.
  """
  lists = _check_config(config)
  conv = cnn.conv_implementation(config.conv_implementation)
  depthwise = cnn.depthwise_implementation(config)

  body: list[layers.Layer] = [
      layers.ExpandDims(),
      layers.Conv2D('conv2d_0', config.first_filters, (5, 5), strides=(1, 2),
                    time_padding='causal', feature_padding='same',
                    implementation=conv),
  ]
  # Features each stage's SubSpectralNorms see: its 1x1 convolution strides.
  first_features = body[-1].output_shape((features, 1))[0]
  stage_features, count = [], first_features
  for stride in lists['strides']:
    count = (count - 1) // stride[1] + 1
    stage_features.append(count)
  _check_sub_groups(config.sub_groups, [features, first_features],
                    stage_features, lists['strides'])

  for stage, (blocks, filters, dilation, stride, dropout, pool) in enumerate(
      zip(*lists.values())):
    body.append(layers.Sequential(f'transition_{stage}', (
        layers.Conv2D('conv1x1_1', filters, (1, 1), strides=stride,
                      use_bias=False, implementation=conv),
        layers.BatchNorm('batch_norm1'),
        layers.Activation('relu', 'relu'),
        layers.BroadcastResidual(
            'broadcast',
            _frequency_branch(dilation, config.sub_groups, depthwise),
            _temporal_branch(filters, dilation, dropout, depthwise, conv,
                             ('batch_norm2', 'conv1x1_2')),
            identity=False),
    )))
    for block in range(blocks):
      body.append(layers.BroadcastResidual(
          f'normal_{stage}_{block}',
          _frequency_branch(dilation, config.sub_groups, depthwise),
          _temporal_branch(filters, dilation, dropout, depthwise, conv,
                           ('batch_norm', 'conv1x1')),
          identity=True))
    if pool > 1:
      body.append(layers.Pool2D(
          f'pool_{stage}', (pool, 1), strides=(pool, 1),
          kind='max' if config.max_pool else 'average'))
  body += [
      layers.DepthwiseConv2D('depthwise_last', (5, 5), time_padding='causal',
                             feature_padding='same', implementation=depthwise),
      layers.FeatureMean('feature_mean'),
      layers.Conv2D('conv2d_last', config.last_filters, (1, 1),
                    use_bias=False, implementation=conv),
  ]
  # The average over the frames of one clip (kws_streaming's streamed
  # GlobalAveragePooling2D), then the 1x1 convolution to the logits.
  convs = layers.Sequential('convs', tuple(body))
  remaining_frames = convs.output_length(frames)
  remaining_features = convs.output_shape((features,))[0]
  head: list[layers.Layer] = [
      layers.Pool2D('average_pool', (remaining_frames, remaining_features),
                    strides=(1, 1), kind='average'),
      layers.Conv2D('logits', label_count, (1, 1), use_bias=False,
                    implementation=conv),
      layers.Flatten('flatten'),
  ]
  if config.return_softmax:
    head.append(layers.Activation('softmax', 'softmax'))
  return (*body, *head)
