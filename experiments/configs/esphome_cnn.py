"""A small streaming CNN for ESPHome's micro_wake_word, on ESPHome's features.

TFLM's micro frontend as ESPHome computes it (30 ms windows every 10 ms, 40
channels: ``micro_frontend_config(window_stride_ms=10.0)``), outside the
model (``preprocess='micro'``), 1 s clips ([100, 40] features). The first
convolution strides three frames, so one streaming step takes 30 ms (the
model's input is [1, 3, 40], as microWakeWord's v2 models); then two
convolutions, the frequency halved twice, a flatten over the window and a
small dense layer: 88,747 parameters (about 90 KB of int8 flash), only ops
ESPHome registers (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D,
LOGISTIC, ...).

For one wake word from text (eSpeak NG and Kokoro-82M), exported with the
ESPHome model and manifest, its cutoff swept on the validation streams:

  python -m kws_jax.wakeword --words "hey jax" --workdir runs/hey_jax_esphome \\
      --config experiments/configs/esphome_cnn.py --esphome

  python -m kws_jax.summary --config experiments/configs/esphome_cnn.py
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.micro_frontend import micro_frontend_config
from kws_jax.models import cnn


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  # Semicausal framing: frame i ends with stride i, so the streaming model
  # on audio steps whole 30 ms blocks from the first sample (what the
  # recipe's stream evaluation runs); ESPHome's frames are the same.
  config.frontend = micro_frontend_config(window_stride_ms=10.0,
                                          padding='semicausal')
  config.model = cnn.default_config()
  config.model.update(
      preprocess='micro', cnn_filters='16,24,16',
      cnn_kernel_size='(3,5),(5,3),(5,3)', cnn_act="'relu','relu','relu'",
      cnn_dilation_rate='(1,1),(1,1),(1,1)',
      cnn_strides='(3,2),(1,2),(1,1)', units2='32', act2="'relu'",
      dropout1=0.2)
  config.schedule.how_many_training_steps = '1000,500'
  config.schedule.learning_rate = '0.001,0.0002'
  config.train.eval_step_interval = 250
  return config
