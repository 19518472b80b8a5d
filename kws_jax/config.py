"""Default experiment sections shared by every model config.

An experiment config (``experiments/configs/*.py``) starts from
``default_config()`` and adds a ``model`` section; every field can be
overridden on the command line with ``--config.section.field=value``.
The defaults are kws_streaming's.
"""

from __future__ import annotations

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  """Data and frontend sections with kws_streaming's defaults."""
  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict({
      'sample_rate': 16000,
      'clip_duration_ms': 1000.0,
  })
  # Feature extraction: kws_streaming's `mfcc_tf` (see kws_jax.frontend).
  config.frontend = ml_collections.ConfigDict({
      'window_size_ms': 40.0,
      'window_stride_ms': 20.0,
      'fft_length': 0,  # 0: next power of two >= the window
      'mel_num_bins': 40,
      'mel_lower_edge_hertz': 20.0,
      'mel_upper_edge_hertz': 7000.0,
      'fft_magnitude_squared': False,
      'log_epsilon': 1e-12,
      'dct_num_features': 20,  # 0: log-mel features
      'preemph': 0.0,
      'window_type': 'hann',
      'dft': 'fft',  # or 'matmul'
  })
  return config
