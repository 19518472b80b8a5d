"""The SVDF ResNet of kws_streaming's 30k-parameter models.

kws_streaming's `svdf_resnet` with the flags of
kws_experiments_30k_12_labels.md (block memory sizes 7 / 7 / 11,11, units1
32 / 50 / 50,128, blocks_pool 2,2,1, BatchNorm with scale, relu, causal
SVDFs without bias, average pooling, units2 64) and its frontend sizes: 80
mel bins up to 7.6 kHz, power spectrum, 40 MFCCs, 12 labels: 34,508
parameters, 33,568 trainable (the rest are BatchNorm statistics).
kws_streaming reports 33K parameters and 94.6% on Speech Commands v2-12
(float and int8) after 80,000 steps with an exponential learning-rate decay.

Two differences from kws_streaming: features come from kws_jax's `mfcc_tf`
frontend (kws_streaming trained this model with TFLite's `mfcc_op`), and the
frontend uses `padding='semicausal'` (50 frames per second instead of 49):
its frames end with their stride, so the strided max pools of the blocks
stream raw audio (with 'valid' framing the frontend's warm-up frame would
fall between the pools' blocks and the model would be refused).

  python -m kws_jax.summary --config experiments/configs/svdf_resnet.py
  python -m kws_jax.train --config experiments/configs/svdf_resnet.py \
      --workdir runs/svdf_resnet
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import svdf_resnet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.frontend.update(mel_num_bins=80, mel_upper_edge_hertz=7600.0,
                         dct_num_features=40, fft_magnitude_squared=True,
                         padding='semicausal')
  config.schedule.update(
      how_many_training_steps='20000,20000,20000,20000',
      learning_rate='0.001,0.0005,0.0001,0.00002', lr_schedule='exp')
  config.model = svdf_resnet.default_config()
  config.model.update(
      block1_memory_size='7', block2_memory_size='7',
      block3_memory_size='11,11', block1_units1='32', block2_units1='50',
      block3_units1='50,128', blocks_pool='2,2,1', use_batch_norm=1,
      bn_scale=1, activation='relu', svdf_dropout=0.0, svdf_pad=1,
      svdf_use_bias=0, dropout1=0.0, units2='64', flatten=0)
  return config
