"""A dense head over Google's speech embedding, on the built-in synthetic speech.

The frozen speech embedding (``kws_jax.speech_embedding``, 96 values every
80 ms from 775 ms of audio) feeds kws_streaming's DNN: a per-embedding dense
layer, the last 16 embeddings flattened (2 s clips: each 1 s file is placed
at the end of the clip, after 1 s of context), dense layers and the logits.
The streaming model takes 80 ms of audio per step.

  python -m kws_jax.train --config experiments/configs/embedding_dnn.py \\
      --workdir runs/embedding_dnn

Timing and accuracy: experiments/RESULTS.md.
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import dnn


def embedding_frontend() -> ml_collections.ConfigDict:
  """The ``frontend`` section of speech embedding models."""
  return ml_collections.ConfigDict({
      'name': 'speech_embedding',
      'clip_db': 80.0,
      'dft': 'fft',
      'max_weight_block': 0,
      'weights_path': '',  # '': the committed third_party weights
  })


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.frontend = embedding_frontend()
  config.data.clip_duration_ms = 2000.0
  config.data.foreground_duration_ms = 1000.0
  config.model = dnn.default_config()
  config.model.units1 = '64'
  config.model.act1 = "'relu'"
  config.model.pool_size = 1
  config.model.dropout1 = 0.3
  config.model.units2 = '128,128'
  config.model.act2 = "'relu','relu'"
  config.schedule.how_many_training_steps = '1000,500'
  config.schedule.learning_rate = '0.001,0.0002'
  config.train.eval_step_interval = 250
  return config
