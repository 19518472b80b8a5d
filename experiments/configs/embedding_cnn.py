"""A temporal convolution head over Google's speech embedding.

The frozen speech embedding feeds kws_streaming's CNN with kernels that span
all 96 embedding values in their first layer and then run along time only
(dilated), over the 16 embeddings of a 2 s clip (each 1 s file is placed at
the end of the clip). Streams 80 ms at a time like ``embedding_dnn``.

  python -m kws_jax.train --config experiments/configs/embedding_cnn.py \\
      --workdir runs/embedding_cnn

Timing and accuracy: experiments/RESULTS.md.
"""

import ml_collections

from experiments.configs import embedding_dnn
from kws_jax.models import cnn


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = embedding_dnn.get_config(arg)
  config.model = cnn.default_config()
  config.model.cnn_filters = '64,64,64,64'
  config.model.cnn_kernel_size = '(3,96),(3,1),(3,1),(3,1)'
  config.model.cnn_act = "'relu','relu','relu','relu'"
  config.model.cnn_dilation_rate = '(1,1),(2,1),(2,1),(1,1)'
  config.model.cnn_strides = '(1,1),(1,1),(1,1),(1,1)'
  config.model.dropout1 = 0.3
  config.model.units2 = '128'
  config.model.act2 = "'relu'"
  return config
