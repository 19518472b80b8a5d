"""The SVDF of "Streaming keyword spotting on mobile devices" (Rybakov 2020).

kws_streaming's `svdf` with the paper's flags (svdf_memory_size
4,10,10,10,10,10, svdf_units1 256 x 6, svdf_units2 128 x 5 then -1, relu,
no dropout, svdf_pad 0: valid padding, which leaves one frame of the clip)
and the paper's frontend for it: 80 mel bins up to 7.6 kHz, 30 MFCCs
([49, 30] features), 12 labels: 354,444 parameters, all trainable (351,884
on [49, 20] features). Trained as kws_experiments_paper_12_labels.md does
(80,000 steps at learning rates 0.001, 0.0005, 0.0001, 0.00002, no
SpecAugment). kws_streaming reports 354K parameters and, with these flags on
its `mfcc_op` features, 96.0% on Speech Commands v2-12 in float and int8,
non-streaming and streaming (kws_experiments_quantized_12_labels.md).

  python -m kws_jax.summary --config experiments/configs/svdf.py
  python -m kws_jax.train --config experiments/configs/svdf.py \
      --workdir runs/svdf
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import svdf


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.frontend.update(mel_num_bins=80, mel_upper_edge_hertz=7600.0,
                         dct_num_features=30)
  config.schedule.update(
      how_many_training_steps='20000,20000,20000,20000',
      learning_rate='0.001,0.0005,0.0001,0.00002')
  config.model = svdf.default_config()
  return config
