"""The DNN of "Streaming keyword spotting on mobile devices" (Rybakov et al. 2020).

kws_streaming's `dnn` with the paper's flags (units1 64,128 relu, max pool 2
stride 2 over the flattened clip, dropout1 0.1, units2 128,256 with act2
linear,relu) on [49, 20] MFCCs, 12 labels: 447,308 parameters. The paper
reports 90.6% on Speech Commands v2-12 after 80,000 steps with SpecAugment.

  python -m kws_jax.summary --config experiments/configs/dnn.py
  python -m kws_jax.train --config experiments/configs/dnn.py --workdir runs/dnn
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import dnn


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = dnn.default_config()
  config.model.update(units1='64,128', act1="'relu','relu'",
                      units2='128,256', act2="'linear','relu'")
  return config
