"""The CRNN of "Streaming keyword spotting on mobile devices" (Rybakov et al. 2020).

kws_streaming's `crnn` with the paper's flags (cnn_filters 16,16, kernels
(3,3),(5,3), gru_units 256, return_sequences 0, dropout1 0.1, units1 128,256,
act1 linear,relu) on [49, 20] MFCCs, 12 labels. The paper reports 98.7% on
Speech Commands v2-12 after 80,000 steps with SpecAugment.

  python -m kws_jax.summary --config experiments/configs/crnn.py
  python -m kws_jax.train --config experiments/configs/crnn.py --workdir runs/crnn
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import crnn


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = crnn.default_config()
  return config
