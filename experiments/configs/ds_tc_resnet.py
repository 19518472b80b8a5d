"""MatchboxNet: kws_streaming's `ds_tc_resnet` with its README's flags.

kws_streaming's `ds_tc_resnet` as its README trains it on Speech Commands v2
with 12 labels (experiments/kws_experiments_12_labels.md): six blocks of
128, 64, 64, 64, 128, 128 filters, time kernels 11, 13, 15, 17, 29 (dilation
2) and 1, residual blocks 2-4, on 40 MFCCs (30 ms windows every 10 ms, 80
mel bins up to 7,600 Hz, 40 DCT coefficients), SpecAugment (2 time masks
of up to 25 frames, 2 frequency masks of up to 7), 120,000 steps at learning
rates 0.001, 0.0005, 0.0002, 0.0001. 73,220 parameters (Keras counts
BatchNorm's statistics as parameters; 71,684 are trainable). kws_streaming
reports "parameters: 75K, float accuracy 98.0" on Speech Commands v2-12.

Differences, none of which changes the parameters: the README trains with
ds_padding 'same' (its default), whose outputs read future frames; this
config uses 'causal', which streams. The frontend frames semicausally (frame
i ends with the 10 ms stride i; kws_streaming frames 'valid'), so that the
causal convolutions never see frontend warm-up frames and the raw-audio
stream equals the full-window model exactly: a 1 s clip gives 100 frames,
kws_streaming's 98 preceded by two whose windows start before the clip
(zero samples there).
kws_streaming's --pick_deterministically has no counterpart here.

  python -m kws_jax.summary --config experiments/configs/ds_tc_resnet.py
  python -m kws_jax.train --config experiments/configs/ds_tc_resnet.py \
      --workdir runs/ds_tc_resnet
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import ds_tc_resnet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.model = ds_tc_resnet.default_config()
  config.frontend.update(window_size_ms=30.0, window_stride_ms=10.0,
                         mel_num_bins=80, dct_num_features=40,
                         mel_upper_edge_hertz=7600.0, padding='semicausal')
  config.data.update(resample=0.15, use_spec_augment=1, time_masks_number=2,
                     time_mask_max_size=25, frequency_masks_number=2,
                     frequency_mask_max_size=7)
  config.schedule.update(how_many_training_steps='40000,40000,20000,20000',
                         learning_rate='0.001,0.0005,0.0002,0.0001')
  return config
