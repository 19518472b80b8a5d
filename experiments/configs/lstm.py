"""The peephole LSTM of "Streaming keyword spotting on mobile devices".

kws_streaming's `lstm` with the paper's `lstm_peep` flags (lstm_units 500,
return_sequences 0, use_peepholes 1, num_proj 200, dropout1 0.3, no dense
layers, stateful 0) on [49, 20] MFCCs, 12 labels: 545,912 parameters. The
paper reports 98.1% on Speech Commands v2-12 after 80,000 steps with
SpecAugment.

  python -m kws_jax.summary --config experiments/configs/lstm.py
  python -m kws_jax.train --config experiments/configs/lstm.py \
      --workdir runs/lstm
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import lstm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = lstm.default_config()
  return config
