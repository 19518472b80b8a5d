"""The CNN of "Streaming keyword spotting on mobile devices" (Rybakov et al. 2020).

kws_streaming's `cnn` with the paper's flags, on 1 s clips at 16 kHz with 40 ms
windows, 20 ms stride and 20 MFCCs ([49, 20] features), 12 labels.

  python -m kws_jax.summary --config experiments/configs/cnn.py
  python -m kws_jax.summary --config experiments/configs/cnn.py \
      --config.model.preprocess=mfcc --config.model.label_count=14

607,246 parameters with 14 labels (606,732 with 12), as published.
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import cnn


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = cnn.default_config()
  return config
