"""kws_streaming's DS-CNN: a convolution, then depthwise-separable blocks.

Topology as kws_streaming's ``models/ds_cnn.py`` (after "Hello Edge",
Zhang et al. 2017): Conv2D (``cnn1_*``) + BatchNorm + activation, then per
block a DepthwiseConv2D (``dw2_*``) + BatchNorm + activation and a 1x1
Conv2D (``cnn2_filters``) + BatchNorm + activation; average pooling over
the whole remaining (time, feature) plane, Dropout and the classifier.

The pooling window covers the frames the convolutions leave of one clip, so
streaming it keeps those frames (kws_streaming's ``Stream(AveragePooling2D)``).
Only ``'valid'`` padding streams: ``'same'`` would read future frames.
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models import cnn
from kws_jax.models.parse import check_same_length, parse_list


def default_config() -> ml_collections.ConfigDict:
  """kws_streaming's DS-CNN flags and defaults (the paper's ``ds_cnn_stream``)."""
  return ml_collections.ConfigDict({
      'name': 'ds_cnn',
      'preprocess': 'raw',
      'label_count': 0,
      'cnn1_kernel_size': '3,3',
      'cnn1_dilation_rate': '2,1',
      'cnn1_strides': '1,1',
      'cnn1_padding': 'valid',
      'cnn1_filters': 300,
      'cnn1_act': 'relu',
      'bn_momentum': 0.98,
      'bn_center': 1,
      'bn_scale': 0,
      'bn_renorm': 0,
      'dw2_kernel_size': '(3,3),(3,3),(10,3),(5,3),(10,3)',
      'dw2_dilation_rate': '(1,1),(2,2),(1,1),(2,2),(1,1)',
      'dw2_strides': '(1,1),(1,1),(1,1),(1,1),(1,1)',
      'dw2_padding': 'valid',
      'dw2_act': "'relu','relu','relu','relu','relu'",
      'cnn2_filters': '300,300,300,300,300',
      'cnn2_act': "'relu','relu','relu','relu','relu'",
      'dropout1': 0.2,
      'return_softmax': False,
      # Speed knob (same parameters and math): 'auto' picks the fast CPU
      # forms (im2col Conv2D, per-tap depthwise); 'xla' the lax
      # convolutions, which the export uses (TFLite DEPTHWISE_CONV_2D).
      'conv_implementation': 'auto',
  })


def _pair(field: str, value) -> tuple[int, int]:
  [pair] = parse_list(field, f'({value})' if isinstance(value, str) and
                      not value.startswith('(') else value, 'pair')
  return pair


def _check_padding(field: str, value: str) -> None:
  if value != 'valid':
    raise ValueError(f"model.{field} is {value!r}, expected 'valid': 'same' "
                     'padding in time reads future frames, so the model could '
                     'not stream.')


def ds_cnn(config: ml_collections.ConfigDict, *, frames: int, features: int,
           label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the DS-CNN for features ``[batch, frames, features]``.

  Raises:
    ValueError: for malformed or unequal lists, renormalization (not
      supported), 'same' padding, or kernels that do not fit the input.
  """
  if config.bn_renorm:
    raise ValueError('model.bn_renorm is 1; batch renormalization is not '
                     'supported, use 0.')
  for field in ('cnn1_padding', 'dw2_padding'):
    _check_padding(field, config[field])
  lists = {
      'dw2_kernel_size': parse_list('model.dw2_kernel_size',
                                    config.dw2_kernel_size, 'pair'),
      'dw2_dilation_rate': parse_list('model.dw2_dilation_rate',
                                      config.dw2_dilation_rate, 'pair'),
      'dw2_strides': parse_list('model.dw2_strides', config.dw2_strides,
                                'pair'),
      'dw2_act': parse_list('model.dw2_act', config.dw2_act, 'str'),
      'cnn2_filters': parse_list('model.cnn2_filters', config.cnn2_filters,
                                 'int'),
      'cnn2_act': parse_list('model.cnn2_act', config.cnn2_act, 'str'),
  }
  check_same_length('model', lists)
  conv_implementation = cnn.conv_implementation(config.conv_implementation)
  depthwise_implementation = cnn.depthwise_implementation(config)

  def norm(name: str) -> layers.BatchNorm:
    return layers.BatchNorm(name, momentum=config.bn_momentum,
                            center=bool(config.bn_center),
                            scale=bool(config.bn_scale))

  body: list[layers.Layer] = [
      layers.ExpandDims(),
      layers.Conv2D(
          'conv2d_0', config.cnn1_filters,
          _pair('model.cnn1_kernel_size', config.cnn1_kernel_size),
          dilation=_pair('model.cnn1_dilation_rate',
                         config.cnn1_dilation_rate),
          strides=_pair('model.cnn1_strides', config.cnn1_strides),
          implementation=conv_implementation),
      norm('batch_norm_0'),
      layers.Activation('activation_0', config.cnn1_act),
  ]
  for i, (kernel, dilation, strides, dw_act, filters, act) in enumerate(
      zip(*lists.values()), start=1):
    body += [
        layers.DepthwiseConv2D(f'depthwise_{i}', kernel, dilation=dilation,
                               strides=strides,
                               implementation=depthwise_implementation),
        norm(f'batch_norm_dw_{i}'),
        layers.Activation(f'activation_dw_{i}', dw_act),
        layers.Conv2D(f'conv2d_{i}', filters, (1, 1),
                      implementation=conv_implementation),
        norm(f'batch_norm_{i}'),
        layers.Activation(f'activation_{i}', act),
    ]
  # The remaining (time, feature) plane of one clip, pooled at once.
  convs = layers.Sequential('convs', tuple(body))
  remaining_frames = convs.output_length(frames)
  remaining_features = convs.output_shape((features,))[0]
  head: list[layers.Layer] = [
      layers.Pool2D('average_pool', (remaining_frames, remaining_features),
                    strides=(1, 1), kind='average'),
      layers.Flatten('flatten'),
      layers.Dropout('dropout', config.dropout1),
      layers.Dense('logits', label_count),
  ]
  if config.return_softmax:
    head.append(layers.Activation('softmax', 'softmax'))
  return (*body, *head)
