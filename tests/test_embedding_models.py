"""Models on the speech embedding: configs, the streaming contract, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import speech_like
from experiments.configs import embedding_cnn, embedding_dnn
from kws_jax import config as kws_config
from kws_jax.layers import FeaturePool, count_params
from kws_jax.models import build_model
from kws_jax.speech_embedding import SpeechEmbedding
from kws_jax.testing import check_streaming_contract


def audio_batch(seconds: float, blocks: int | None = None) -> jnp.ndarray:
  rng = np.random.default_rng(0)
  batch = np.stack([speech_like(rng, seconds) for _ in range(2)])
  if blocks is not None:
    batch = batch[:, :blocks * 1280]
  return jnp.asarray(batch.astype(np.float32))


@pytest.mark.parametrize('config_module, params', [
    (embedding_dnn, 155_468), (embedding_cnn, 89_996)])
def test_builds_on_two_second_clips(config_module, params):
  model = build_model(config_module.get_config())
  assert isinstance(model.frontend, SpeechEmbedding)
  assert (model.clip_length, model.block_size, model.lookback) == (32000, 1280,
                                                                   24)
  assert model.body.output_length(16) == 1  # a head over 16 embeddings
  assert count_params(model.init(jax.random.key(0))) == params


@pytest.mark.long
@pytest.mark.parametrize('config_module', [embedding_dnn, embedding_cnn])
def test_model_streaming_contract(config_module):
  config = config_module.get_config()
  model = build_model(config)
  params = model.init(jax.random.key(1))
  # 27 blocks: the 2 s receptive field and two more outputs.
  # Gradients through the frozen embedding: once (the heads' own layers
  # are checked in test_layers).
  grads = config_module is embedding_dnn
  report = check_streaming_contract(model, params, audio_batch(2.2, 27),
                                    atol=1e-4, check_grads=grads)
  assert report.full_shape == (2, 3, 12)
  if grads:
    assert report.grad_diff is not None and report.grad_diff < 1e-6


def test_stream_equals_non_streaming_logits_of_the_last_two_seconds():
  model = build_model(embedding_dnn.get_config())
  params = model.init(jax.random.key(2))
  audio = audio_batch(2.0)
  state = model.init_state(2)
  for start in range(0, 32000, 1280):
    state, logits = model.step(params, state, audio[:, start:start + 1280])
  np.testing.assert_allclose(logits[:, 0], model.logits(params, audio),
                             atol=1e-4)


@pytest.mark.parametrize('pool, stride, size', [(2, 2, 9), (3, 1, 7), (1, 1, 4)])
def test_feature_pool_is_keras_max_pool_1d(pool, stride, size):
  layer = FeaturePool('pool', pool, stride)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 5, size)),
                  jnp.float32)
  out = np.asarray(layer.apply({}, x))
  windows = (size - pool) // stride + 1
  expected = np.stack([x[..., i * stride:i * stride + pool].max(-1)
                       for i in range(windows)], axis=-1)
  np.testing.assert_array_equal(out, expected)
  assert layer.output_shape((size,)) == (windows,)
  check_streaming_contract(layer, {}, x)


def test_embedding_frontend_section_refuses_mfcc_fields():
  config = embedding_dnn.get_config()
  config.frontend.mel_num_bins = 40
  with pytest.raises(ValueError, match='frontend.mel_num_bins is not a '
                     'setting of the speech_embedding frontend'):
    build_model(config)


def test_unknown_frontend_is_named():
  config = embedding_dnn.get_config()
  config.frontend.name = 'wav2vec'
  with pytest.raises(ValueError, match="frontend.name is 'wav2vec', expected "
                     'one of mfcc, micro, speech_embedding'):
    build_model(config)


def test_clip_that_is_not_whole_steps_is_refused():
  config = embedding_dnn.get_config()
  config.data.clip_duration_ms = 1000.0
  with pytest.raises(ValueError, match=r'data.clip_duration_ms is 1000 \(16000 '
                     r'samples\), expected a multiple of the 80 ms'):
    build_model(config)


def test_clip_layout_of_the_config():
  config = embedding_dnn.get_config()
  assert kws_config.clip_layout(config) == {
      'clip_samples': 32000, 'foreground_samples': 16000,
      'sample_rate': 16000}
  config.data.foreground_duration_ms = 2500.0
  with pytest.raises(ValueError, match='foreground_duration_ms is 2500'):
    kws_config.clip_layout(config)


def test_streaming_tflite_with_the_embedding_inside_equals_the_jax_step(
    tmp_path):
  from kws_jax.export import TfliteStreaming, forms, savedmodel, tflite  # pylint: disable=g-import-not-at-top
  from kws_jax.export.pipeline import float_scopes  # pylint: disable=g-import-not-at-top
  model = build_model(embedding_dnn.get_config())
  params = model.init(jax.random.key(4))
  savedmodel.save('stream_state_external', model, params, str(tmp_path))
  flatbuffer = tflite.convert(str(tmp_path))
  ops = tflite.op_names(flatbuffer)
  assert 'CONV_2D' in ops and 'RFFT2D' in ops
  assert not any(op.startswith('Flex') or op == 'CUSTOM' for op in ops)
  path = str(tmp_path / 'model.tflite')
  with open(path, 'wb') as f:
    f.write(flatbuffer)
  runner = TfliteStreaming(path)
  audio = np.asarray(audio_batch(2.0)[:1])
  got = np.stack([runner(audio[:, i:i + 1280]) for i in range(0, 32000, 1280)])
  _, expected = forms.JaxStream(model, params).run(audio)
  np.testing.assert_allclose(got, expected, atol=1e-4)
  # Full int8 keeps the whole embedding float (its activations do not
  # survive int8) and quantizes the head.
  assert float_scopes(model) == ('frontend',)
