"""Default experiment sections shared by every model config.

An experiment config (``experiments/configs/*.py``) starts from
``default_config()`` and adds a ``model`` section; every field can be
overridden on the command line with ``--config.section.field=value``.
Defaults and flag names are kws_streaming's (``train/base_parser.py``).
"""

from __future__ import annotations

import os

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  """Data, frontend, optimizer, schedule and training sections."""
  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict({
      'data_dir': 'data/synth',
      'sample_rate': 16000,
      'clip_duration_ms': 1000.0,
      # 0: files fill the clip. Shorter: files are fit to this length and
      # placed at the end of the clip (context before the word).
      'foreground_duration_ms': 0.0,
      'wanted_words': 'yes,no,up,down,left,right,on,off,stop,go',
      # Window banks (kws_jax.data.windows), comma-separated .npz paths:
      # windows cut from streams and mined false accepts. This fraction of
      # each training batch is drawn from them (0: none).
      'window_banks': '',
      'window_fraction': 0.0,
      'split_data': 1,  # 0: read pre-split training/ validation/ testing/
      'silence_percentage': 10.0,
      'unknown_percentage': 10.0,
      'validation_percentage': 10.0,
      'testing_percentage': 10.0,
      # Training augmentation of the audio.
      'background_frequency': 0.8,
      'background_volume': 0.1,
      'time_shift_ms': 100.0,
      'resample': 0.15,
      'volume_resample': 0.0,
      # Where the training augmentation (and SpecAugment) runs: 'on' the
      # accelerator, inside the jitted train step (kws_jax.data.device_augment;
      # the loader only reads), 'off' (the host's loader threads), or 'auto':
      # on unless JAX runs on the CPU or acoustics.enabled (host-only).
      'device_augmentation': 'auto',
      # The training split's clips read once and kept on the device, which
      # then gathers each batch from indices (kws_jax.data.device_data):
      # 'on', 'off' or 'auto' (on with device_augmentation, off the CPU,
      # when the clips take at most a quarter of the device's memory).
      # Where the clips come from does not change the batches.
      'clips_on_device': 'auto',
      # SpecAugment on the features (training only).
      'use_spec_augment': 0,
      'time_masks_number': 2,
      'time_mask_max_size': 10,
      'frequency_masks_number': 2,
      'frequency_mask_max_size': 5,
      'num_threads': 0,  # loader threads; 0: one per core
  })
  # Real-world acoustics of the training clips (kws_jax.data.acoustics):
  # rooms, background noise at an SNR (in place of background_volume),
  # microphones, telephone lines, gain and clipping. 0: kws_streaming's
  # augmentation only.
  config.acoustics = ml_collections.ConfigDict({
      'enabled': 0,
      'rooms': 300,  # simulated once, cached in rooms_path
      'rooms_seed': 0,
      'rooms_path': '',  # '': data/rooms/rooms_<rooms>_seed<rooms_seed>.npz
      'room_probability': 0.5,
      'noise_probability': 0.8,
      'snr_db_low': 0.0,
      'snr_db_high': 20.0,
      'microphone_probability': 0.5,
      'telephone_probability': 0.1,
      'gain_db_low': -12.0,
      'gain_db_high': 6.0,
  })
  # Feature extraction: kws_streaming's `mfcc_tf` (see kws_jax.frontend).
  config.frontend = ml_collections.ConfigDict({
      # 'micro' (TFLM's frontend: micro_frontend.micro_frontend_config())
      # and 'speech_embedding' have sections of their own.
      'name': 'mfcc',
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
      'max_weight_block': 0,  # > 0: constant matmuls in blocks (export)
      # 'semicausal': frames end with their stride (no warm-up frame), which
      # a time stride right after the frontend needs to stream.
      'padding': 'valid',
  })
  # Quantization-aware training (kws_streaming's --quantize): the network
  # trains as its full-integer export computes (kws_jax.layers.quantize):
  # int8 weights per channel, int8 activations and streaming states with
  # ranges averaged over training batches (range_momentum).
  config.quantization = ml_collections.ConfigDict({
      'aware': 0,
      'range_momentum': 0.99,
  })
  config.optimizer = ml_collections.ConfigDict({
      'name': 'adam',  # adam, adamw, momentum, novograd
      'epsilon': 1e-8,  # adam, adamw
      'momentum': 0.9,  # momentum
      'weight_decay': 0.0,  # adamw's decoupled decay
      'novograd_beta_1': 0.95,
      'novograd_beta_2': 0.5,
      'novograd_weight_decay': 0.001,
      'l2_weight_decay': 0.0,  # Keras-style L2 on kernels, added to the loss
      'label_smoothing': 0.0,
      'clip_grad_norm': 0.0,  # 0: no clipping
  })
  # kws_streaming's phases: one learning rate per block of steps.
  config.schedule = ml_collections.ConfigDict({
      'how_many_training_steps': '10000,10000,10000',
      'learning_rate': '0.0005,0.0001,0.00002',
      'lr_schedule': 'linear',  # 'linear': constant per phase; 'exp'
      'warmup_steps': 0,
  })
  config.train = ml_collections.ConfigDict({
      'batch_size': 100,
      # Gradient accumulation inside the step: the batch's gradient as the
      # sum over this many micro-batches computed one after another (faster
      # for convolutional models on a CPU, slower for recurrent ones; on
      # XLA:CPU the peak memory stays the whole batch's). Dropout masks and
      # BatchNorm statistics are then per micro-batch (kws_jax.train.steps).
      'microbatches': 1,
      'eval_step_interval': 400,
      'checkpoint_every': 0,  # 0: at every evaluation
      'max_to_keep': 3,  # periodic checkpoints kept besides the best
      'seed': 0,
      'log_every': 10,  # TensorBoard / metrics.jsonl rows
      # A finished run whose best weights start this one (e.g. quantization-
      # aware fine-tuning of a float run); '': a fresh initialization.
      'init_from': '',
  })
  return config


def rooms_path(config: ml_collections.ConfigDict) -> str:
  """Where the room bank of ``config.acoustics`` is cached."""
  cfg = config.acoustics
  return cfg.rooms_path or os.path.join(
      'data', 'rooms', f'rooms_{cfg.rooms}_seed{cfg.rooms_seed}.npz')


def clip_layout(config: ml_collections.ConfigDict) -> dict[str, int | None]:
  """``config.data``'s clip geometry as keyword arguments of the data loaders.

  ``clip_samples`` (model input), ``foreground_samples`` (what each file is
  fit to, placed at the clip's end; None: the whole clip) and
  ``sample_rate``, as ``kws_jax.data.train_batches``/``eval_batches`` and
  ``kws_jax.evaluate`` take them.

  Raises:
    ValueError: a foreground longer than the clip.
  """
  rate = config.data.sample_rate
  clip = int(round(rate * config.data.clip_duration_ms / 1000.0))
  foreground_ms = config.data.get('foreground_duration_ms', 0.0)
  foreground = int(round(rate * foreground_ms / 1000.0)) or None
  if foreground is not None and not 0 < foreground <= clip:
    raise ValueError(
        f'data.foreground_duration_ms is {foreground_ms:g}, expected 0 (the '
        f'whole clip) or up to data.clip_duration_ms '
        f'({config.data.clip_duration_ms:g}).')
  return {'clip_samples': clip, 'foreground_samples': foreground,
          'sample_rate': rate}
