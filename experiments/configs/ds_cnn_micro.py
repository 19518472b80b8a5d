"""The paper's streaming DS-CNN on TensorFlow Lite Micro's audio frontend.

``ds_cnn.py`` (kws_streaming's ``ds_cnn`` with the paper's ``ds_cnn_stream``
flags, 300 filters) on kws_streaming's 'micro' features instead of MFCCs:
TFLM's fixed-point frontend (``kws_jax.micro_frontend``: filterbank, noise
reduction, PCAN, log) with 40 channels of 30 ms windows every 20 ms, times
10/256, so a 1 s clip is still [49, 40] and one streaming step 20 ms. The
features are computed outside the model (``model.preprocess='micro'``), as
a microcontroller's frontend computes them before the network runs. Same
parameters as ``ds_cnn.py`` (497,412 with BatchNorm's statistics): the
kernels do not depend on the feature count, the final pooling covers the
wider plane.

  python -m kws_jax.summary --config experiments/configs/ds_cnn_micro.py
  python -m kws_jax.train --config experiments/configs/ds_cnn_micro.py \
      --workdir runs/ds_cnn_micro
"""

import ml_collections

from experiments.configs import ds_cnn
from kws_jax.micro_frontend import micro_frontend_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ds_cnn.get_config(arg)
  config.frontend = micro_frontend_config(
      window_size_ms=30.0, window_stride_ms=20.0, num_channels=40)
  config.model.preprocess = 'micro'
  return config
