"""The quickstart: a narrower paper CNN on the built-in synthetic speech.

kws_streaming's CNN topology (same kernels, dilations and dense head) with
half the filters, on raw audio (the MFCC frontend is inside the model, so the
streaming model takes 20 ms of samples), trained on ``data/synth``
(``python -m kws_jax.data.synth --out data/synth``) with a short schedule.

  python -m kws_jax.train --config experiments/configs/cnn_synth.py \
      --workdir runs/cnn_synth

On 2 CPU cores it trains in about 6 minutes (1,500 steps of 100 clips) and
reaches 94% test accuracy on the synthetic test split (experiments/RESULTS.md).
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import cnn


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = cnn.default_config()
  config.model.cnn_filters = '32,32,32,32,64,32,64'
  config.data.data_dir = 'data/synth'
  config.schedule.how_many_training_steps = '1000,500'
  config.schedule.learning_rate = '0.001,0.0002'
  config.train.eval_step_interval = 250
  return config
