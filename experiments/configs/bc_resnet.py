"""The streaming BC-ResNet-1 of kws_streaming (Broadcasted Residual Learning).

kws_streaming's `bc_resnet` at its default BC-ResNet-1 widths (filters
8,12,16,20, first_filters 16, last_filters 32, blocks_n 2,2,4,4: each stage
a TransitionBlock and blocks_n NormalBlocks, strides (1,1),(1,2),(1,2),(1,1),
sub_groups 5) with --paddings 'causal' (kws_streaming's default 'same'
reads future frames and cannot stream) and the paper's per-stage dilations
1, 2, 4, 8 and dropout 0.1: dilations (1,1),(2,1),(4,1),(8,1), dropouts 0.1
(kws_streaming's defaults are (1,1),(2,1),(3,1),(3,1) and 0.5; neither
changes the parameters). The frontend gives
the 40 bands BC-ResNet is built for (40 features: 20 after the first
convolution's feature stride, then 10 and 5, all divisible by the 5
sub-groups) at the paper's 30 ms window and 10 ms hop: 40 MFCCs of 40 mel
bins. Its padding is 'semicausal' (100 frames per 1 s clip instead of 98):
frames end with their stride, so the stream has no warm-up frame for the
causal convolutions to read where the full window pads zeros, and raw audio
streams exactly.

14,024 parameters with 12 labels (Keras counts BatchNorm's statistics;
11,032 are trainable). kws_streaming's extra NormalBlock per stage makes it
larger than the paper's BC-ResNet-1 (9.2K parameters; 96.6% on Speech
Commands v1 and 96.9% on v2-12). The stream takes 10 ms steps and warms up
for 99 steps (the average over the clip's frames).

Its schedule is kws_jax's default at 20 times the learning rates (0.01,
0.002, 0.0004 over three phases of 10,000 steps): at 0.001 this 14K-parameter
model stayed at chance after 400 steps on the synthetic data, at 0.01 it
learned (experiments/RESULTS.md, the zoo). kws_jax's default augmentation
(no SpecAugment) applies.

  python -m kws_jax.summary --config experiments/configs/bc_resnet.py
  python -m kws_jax.train --config experiments/configs/bc_resnet.py \
      --workdir runs/bc_resnet
"""

import ml_collections

from kws_jax import config as kws_config
from kws_jax.models import bc_resnet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = kws_config.default_config()
  config.frontend.update(window_size_ms=30.0, window_stride_ms=10.0,
                         mel_num_bins=40, dct_num_features=40,
                         padding='semicausal')
  config.model = bc_resnet.default_config()
  config.model.update(dilations='(1,1),(2,1),(4,1),(8,1)',
                      dropouts='0.1, 0.1, 0.1, 0.1')
  config.schedule.learning_rate = '0.01,0.002,0.0004'
  return config
