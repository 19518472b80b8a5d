"""The CNN of kws_streaming (Rybakov et al. 2020), built from streaming layers.

Topology as kws_streaming's ``models/cnn.py``: stacked Conv2D over
(time, feature) with valid padding, Flatten over the remaining frames,
Dropout, Dense layers and a linear classifier. The paper's defaults on
``[49, 20]`` MFCCs give conv outputs (47,18,64), (43,16,64), (35,14,64),
(31,12,64), (23,11,128), (19,11,64), (1,11,128), flatten 1408, then dense
128, 256 and the logits.
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models.parse import check_same_length, parse_list


def default_config() -> ml_collections.ConfigDict:
  """The paper's CNN flags, spelled as kws_streaming's command line."""
  return ml_collections.ConfigDict({
      'name': 'cnn',
      'preprocess': 'raw',  # 'raw': audio in, frontend inside; 'mfcc'
      'label_count': 0,  # 0: from data.wanted_words (+ silence, unknown)
      'cnn_filters': '64,64,64,64,128,64,128',
      'cnn_kernel_size': '(3,3),(5,3),(5,3),(5,3),(5,2),(5,1),(10,1)',
      'cnn_act': "'relu','relu','relu','relu','relu','relu','relu'",
      'cnn_dilation_rate': '(1,1),(1,1),(2,1),(1,1),(2,1),(1,1),(2,1)',
      'cnn_strides': '(1,1),(1,1),(1,1),(1,1),(1,1),(1,1),(1,1)',
      'dropout1': 0.5,
      'units2': '128,256',
      'act2': "'linear','relu'",
      'return_softmax': False,
      # Speed knobs (same parameters and math): see kws_jax.layers.conv.
      # 'auto': what build_model's auto_conv_implementation says ('im2col'
      # unless the caller chooses; the training loop picks 'xla' when XLA:CPU
      # runs convolutions with YNNPACK, see kws_jax.cli).
      'conv_implementation': 'auto',
      'compute_dtype': 'float32',  # or 'bfloat16' matmul inputs
  })


def cnn(config: ml_collections.ConfigDict, *, frames: int, features: int,
        label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the CNN for features ``[batch, frames, features]``.

  Args:
    config: the model section (see ``default_config``).
    frames: feature frames in one clip; the Flatten window covers what the
      convolutions leave of them.
    features: features per frame.
    label_count: number of classes.

  Returns:
    The layers, from features ``[batch, time, features]`` to logits
    ``[batch, time_out, label_count]``.

  Raises:
    ValueError: for malformed lists, lists of unequal length, or kernels that
      do not fit the input (naming the layer and the remaining size).
  """
  convs = conv_layers(config)
  hidden = _dense_layers(config)
  compute_dtype = _compute_dtype(config.compute_dtype)

  # Walk the shapes now so that a kernel that does not fit fails here.
  shape, length = (features, 1), frames
  for conv in convs:
    length = conv.output_length(length)
    shape = conv.output_shape(shape)

  head: list[layers.Layer] = [
      layers.Flatten('flatten', window=length),
      layers.Dropout('dropout', config.dropout1),
      *hidden,
      layers.Dense('logits', label_count, compute_dtype=compute_dtype),
  ]
  if config.return_softmax:
    head.append(layers.Activation('softmax', 'softmax'))
  return (layers.ExpandDims(), *convs, *head)


def conv_layers(config: ml_collections.ConfigDict) -> list[layers.Conv2D]:
  """The ``cnn_*`` Conv2D layers (shared with the CRNN)."""
  lists = {
      'cnn_filters': parse_list('model.cnn_filters', config.cnn_filters, 'int'),
      'cnn_kernel_size': parse_list('model.cnn_kernel_size',
                                    config.cnn_kernel_size, 'pair'),
      'cnn_act': parse_list('model.cnn_act', config.cnn_act, 'str'),
      'cnn_dilation_rate': parse_list('model.cnn_dilation_rate',
                                      config.cnn_dilation_rate, 'pair'),
      'cnn_strides': parse_list('model.cnn_strides', config.cnn_strides,
                                'pair'),
  }
  check_same_length('model', lists)
  compute_dtype = _compute_dtype(config.compute_dtype)
  implementation = conv_implementation(config.conv_implementation)
  return [
      layers.Conv2D(f'conv2d_{i}', filters, kernel, dilation=dilation,
                    strides=strides, activation=act,
                    implementation=implementation,
                    compute_dtype=compute_dtype)
      for i, (filters, kernel, act, dilation, strides) in enumerate(
          zip(*lists.values()))
  ]


def _dense_layers(config: ml_collections.ConfigDict) -> list[layers.Dense]:
  lists = {
      'units2': parse_list('model.units2', config.units2, 'int'),
      'act2': parse_list('model.act2', config.act2, 'str'),
  }
  check_same_length('model', lists)
  compute_dtype = _compute_dtype(config.compute_dtype)
  return [layers.Dense(f'dense_{i}', units, act, compute_dtype=compute_dtype)
          for i, (units, act) in enumerate(zip(*lists.values()))]


def conv_implementation(name: str) -> str:
  """The Conv2D implementation of ``model.conv_implementation``.

  ``build_model`` resolves 'auto' before the builders run; a builder called
  directly reads 'auto' as 'im2col'. Models never read the environment.
  """
  return 'im2col' if name == 'auto' else name


def depthwise_implementation(config: ml_collections.ConfigDict) -> str:
  """DepthwiseConv2D's implementation: 'xla' (TFLite DEPTHWISE_CONV_2D) when
  ``conv_implementation`` is 'xla', as the export sets it; otherwise per-tap
  multiply-adds, about 2x faster to train on CPU (experiments/RESULTS.md).
  ``build_model`` resolving 'auto' asks for the taps explicitly."""
  chosen = config.get('depthwise_implementation')
  if chosen:
    return chosen
  return 'xla' if config.conv_implementation == 'xla' else 'taps'


def _compute_dtype(name: str) -> str | None:
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"model.compute_dtype is {name!r}, expected 'float32' or "
                     "'bfloat16'.")
  return None if name == 'float32' else name
