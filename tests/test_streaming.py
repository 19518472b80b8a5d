"""Batched streaming: lax.scan over the step equals stepping block by block."""

import jax
import numpy as np
import pytest

from experiments.configs import cnn as cnn_config
from experiments.configs import gru as gru_config
from kws_jax.models import build_model, streaming
from tests.test_train import tiny_config


def tiny_model(preprocess: str):
  config = tiny_config('unused')
  config.model.preprocess = preprocess
  model = build_model(config)
  return model, model.init(jax.random.key(3))


def stepped_logits(model, params, audio: np.ndarray) -> np.ndarray:
  """Reference: audio_step block by block from the zero state, at batch 1."""
  size = streaming.block_samples(model)
  step = jax.jit(lambda s, b: streaming.audio_step(model, params, s, b))
  state = streaming.init_audio_state(model, 1)
  rows = []
  for block in audio.reshape(-1, size):
    state, logits = step(state, block[None])
    rows.append(np.asarray(logits[0]))
  return np.stack(rows)


@pytest.mark.parametrize('preprocess', ['raw', 'mfcc'])
def test_scan_equals_stepping_block_by_block(rng, preprocess):
  model, params = tiny_model(preprocess)
  size = streaming.block_samples(model)
  audio = rng.uniform(-0.5, 0.5, (2, 70 * size)).astype(np.float32)
  scanned = np.asarray(streaming.scan_logits(model, params, audio))
  assert scanned.shape == (2, 70, model.label_count)
  for row in range(2):
    np.testing.assert_allclose(scanned[row],
                               stepped_logits(model, params, audio[row]),
                               atol=2e-5)


@pytest.mark.parametrize('samples_extra', [0, 1, 319])
@pytest.mark.parametrize('segment_steps, batch_size', [(7, 3), (40, 2),
                                                       (500, 4)])
def test_long_stream_in_segments_equals_one_stream(rng, segment_steps,
                                                   batch_size, samples_extra):
  model, params = tiny_model('raw')
  size = streaming.block_samples(model)
  audio = rng.uniform(-0.5, 0.5, 230 * size + samples_extra).astype(np.float32)
  logits = streaming.stream_logits(model, params, audio,
                                   segment_steps=segment_steps,
                                   batch_size=batch_size)
  steps = 230 + (samples_extra > 0)
  padded = np.pad(audio, (0, steps * size - len(audio)))
  assert logits.shape == (steps, model.label_count)
  np.testing.assert_allclose(logits, stepped_logits(model, params, padded),
                             atol=2e-5)


@pytest.mark.parametrize('samples_extra', [0, 5])
def test_a_recurrent_model_streams_in_order_and_exactly(rng, samples_extra):
  config = tiny_config('unused')
  config.model = gru_config.get_config().model
  config.model.update(preprocess='raw', gru_units='6', units1='8',
                      act1="'relu'")
  model = build_model(config)
  params = model.init(jax.random.key(4))
  assert streaming.warmup_steps(model) is None  # its state never forgets
  size = streaming.block_samples(model)
  audio = rng.uniform(-0.5, 0.5, 50 * size + samples_extra).astype(np.float32)
  logits = streaming.stream_logits(model, params, audio, segment_steps=16)
  steps = 50 + (samples_extra > 0)
  padded = np.pad(audio, (0, steps * size - len(audio)))
  assert logits.shape == (steps, model.label_count)
  np.testing.assert_allclose(logits, stepped_logits(model, params, padded),
                             atol=2e-5)


def test_warmup_covers_the_receptive_field():
  model, _ = tiny_model('raw')
  # The tiny CNN sees 1 s: 50 blocks of 20 ms.
  assert streaming.receptive_field_samples(model) == 16000
  assert streaming.warmup_steps(model) == 51


@pytest.mark.parametrize('audio, fragment', [
    (np.zeros((2, 320), np.float32), r'shape \(2, 320\)'),
    (np.zeros(0, np.float32), r'shape \(0,\)'),
    (np.full(640, np.nan, np.float32), 'NaN'),
])
def test_bad_audio_is_named(audio, fragment):
  model, params = tiny_model('raw')
  with pytest.raises(ValueError, match=fragment):
    streaming.stream_logits(model, params, audio)


def test_scan_refuses_partial_blocks():
  model, params = tiny_model('raw')
  with pytest.raises(ValueError, match='multiple of the 320-sample block'):
    streaming.scan_logits(model, params, np.zeros((1, 500), np.float32))


@pytest.mark.parametrize('padding', ['valid', 'semicausal'])
def test_audio_model_of_a_feature_model_is_its_frontend_then_its_net(padding):
  config = cnn_config.get_config()
  config.model.update(preprocess='mfcc', cnn_filters='4,4,4,4,4,4,4',
                      units2='8', act2="'relu'")
  config.frontend.padding = padding
  features_model = build_model(config)
  config.model.preprocess = 'raw'
  raw_model = build_model(config)
  audio_model = features_model.audio_model
  assert audio_model.preprocess == 'raw'
  assert audio_model.clip_length == raw_model.clip_length == 16000
  assert (audio_model.block_size, audio_model.lookback,
          audio_model.receptive_field) == (
              raw_model.block_size, raw_model.lookback,
              raw_model.receptive_field)
  assert raw_model.audio_model is raw_model
  params = features_model.init(jax.random.key(0))
  audio = 0.1 * jax.random.normal(jax.random.key(1), (2, 16000))
  np.testing.assert_allclose(
      audio_model.logits(params, audio),
      features_model.logits(params, features_model.inputs_from_audio(audio)),
      atol=1e-5)
