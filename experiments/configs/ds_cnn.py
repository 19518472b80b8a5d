"""The streaming DS-CNN of "Streaming keyword spotting on mobile devices".

kws_streaming's `ds_cnn` with the paper's `ds_cnn_stream` flags (300 filters,
BatchNorm with momentum 0.98, centre only), on [49, 20] MFCCs, 12 labels:
497,412 parameters (Keras counts BatchNorm's statistics as parameters; 490,812
are trainable). The paper reports 98.6% on Speech Commands v2-12 after 80,000
steps with SpecAugment.

  python -m kws_jax.summary --config experiments/configs/ds_cnn.py
  python -m kws_jax.train --config experiments/configs/ds_cnn.py \
      --workdir runs/ds_cnn
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import ds_cnn


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = ds_cnn.default_config()
  return config
