"""kws_streaming's CRNN: convolutions, then GRUs, then dense layers.

Topology as kws_streaming's ``models/crnn.py`` (Arik et al. 2017): Conv2D
layers (``cnn_*``, valid padding) on ``[time, feature, 1]``, each frame's
``[feature, channels]`` flattened to a vector, GRU layers (``gru_units``,
``return_sequences``), Flatten, Dropout, Dense layers (``units1``/``act1``)
and the classifier. The convolutions stream through buffers, the GRUs carry
their state (see ``models.gru``).
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models import cnn, gru


def default_config() -> ml_collections.ConfigDict:
  """The paper's CRNN flags: the GRU model's, plus the convolutions'."""
  config = gru.default_config()
  config.update(name='crnn', gru_units='256')
  config.update({
      'cnn_filters': '16,16',
      'cnn_kernel_size': '(3,3),(5,3)',
      'cnn_act': "'relu','relu'",
      'cnn_dilation_rate': '(1,1),(1,1)',
      'cnn_strides': '(1,1),(1,1)',
      'conv_implementation': 'auto',  # see models.cnn
      'compute_dtype': 'float32',
  })
  return config


def crnn(config: ml_collections.ConfigDict, *, frames: int, features: int,
         label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the CRNN for features ``[batch, frames, features]``.

  Raises:
    ValueError: for malformed or unequal lists, or kernels that do not fit.
  """
  convs = cnn.conv_layers(config)
  stack = layers.Sequential('convs', (layers.ExpandDims(), *convs))
  remaining = stack.output_length(frames)
  stack.output_shape((features,))  # a kernel too wide fails here, named
  return (layers.ExpandDims(), *convs, layers.Flatten('frame_vector'),
          *gru.recurrent_head(config, gru.gru_cells(config),
                              frames=remaining, label_count=label_count))
