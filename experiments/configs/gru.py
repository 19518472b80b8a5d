"""The GRU of "Streaming keyword spotting on mobile devices" (Rybakov et al. 2020).

kws_streaming's `gru` with the paper's flags (gru_units 400, return_sequences
0, stateful 0, dropout1 0.1, units1 128,256, act1 linear,relu) on [49, 20]
MFCCs, 12 labels: 593,836 parameters. The paper reports 98.2% on Speech
Commands v2-12 after 80,000 steps with SpecAugment.

  python -m kws_jax.summary --config experiments/configs/gru.py
  python -m kws_jax.train --config experiments/configs/gru.py --workdir runs/gru
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import gru


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = gru.default_config()
  return config
