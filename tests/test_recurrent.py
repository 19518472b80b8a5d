"""GRU and CRNN: Keras' cell and parameter counts, streaming, training, export."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import crnn as crnn_config
from experiments.configs import gru as gru_config
from kws_jax import keras_reference
from kws_jax import layers
from kws_jax.layers import count_params, scan_steps
from kws_jax.models import build_model
from kws_jax.testing import check_streaming_contract
from test_train import tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_logits_match_keras, train_and_export_tiny

SMALL = dict(gru_units='6', units1='8', act1="'relu'")


def make_config(**model_overrides):
  config = gru_config.get_config()
  config.model.update(model_overrides)
  return config


def _random_params(params, seed=0):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [
      0.3 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)])


def test_gru_cell_matches_keras():
  tf = pytest.importorskip('tensorflow')
  gru = layers.GRU('gru', 5)
  params = _random_params(gru.init(jax.random.key(0), (3,)))
  keras_gru = tf.keras.layers.GRU(5, return_sequences=True, reset_after=True)
  keras_gru.build((2, 7, 3))
  keras_gru.set_weights([np.asarray(params[k]) for k in (
      'kernel', 'recurrent_kernel', 'bias')])
  x = jax.random.normal(jax.random.key(1), (2, 7, 3))
  np.testing.assert_allclose(gru.apply(params, x),
                             keras_gru(np.asarray(x)).numpy(), atol=1e-5)


@pytest.mark.parametrize('time', [1, 9])
def test_gru_contract(time):
  gru = layers.GRU('gru', 4)
  params = _random_params(gru.init(jax.random.key(0), (3,)))
  check_streaming_contract(gru, params,
                           jax.random.normal(jax.random.key(2), (2, time, 3)))


def test_paper_gru_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  model = build_model(make_config(preprocess='mfcc'))
  keras_model = keras_reference.paper_gru(tf)
  assert keras_model.count_params() == 593_836
  params = assert_logits_match_keras(model, keras_model)
  assert count_params(params) == 593_836


@pytest.mark.parametrize('return_sequences', ['0', '1'])
def test_gru_model_streams_and_its_last_clip_frame_is_the_clip(
    return_sequences):
  config = make_config(preprocess='mfcc', return_sequences=return_sequences,
                       **SMALL)
  config.data.clip_duration_ms = 400  # 19 frames: the unrolled cells compile
  model = build_model(config)         # faster
  params = _random_params(model.init(jax.random.key(0)))
  clip = jax.random.normal(jax.random.key(3), (2, model.clip_length, 20))
  longer = jnp.concatenate([clip, clip[:, :6]], axis=1)
  check_streaming_contract(model, params, longer, atol=1e-4,
                           check_grads=False)  # checked on the layer
  # From a zero state, the stream's logits at the clip's last frame are the
  # non-streaming logits of the clip.
  _, streamed = scan_steps(model, params, clip)
  np.testing.assert_allclose(streamed[:, -1], model.logits(params, clip),
                             atol=1e-5)


def test_gru_model_refuses_what_it_cannot_build():
  with pytest.raises(ValueError, match='model.stateful is 1'):
    build_model(make_config(stateful=1, **SMALL))
  with pytest.raises(ValueError, match='gru_0 returns only its last frame'):
    build_model(make_config(gru_units='4,4', return_sequences='0,0'))


@pytest.mark.long
def test_gru_trains_and_exports(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  # The GRU stands for the recurrent models under TFLM (micro).
  train_and_export_tiny(tiny_data, str(tmp_path / 'run'),
                        make_config(preprocess='raw', **SMALL).model,
                        micro=True)


def test_paper_crnn_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  config = crnn_config.get_config()
  config.model.preprocess = 'mfcc'
  model = build_model(config)
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input((49, 20)), tf.keras.layers.Reshape((49, 20, 1)),
      tf.keras.layers.Conv2D(16, (3, 3), activation='relu'),
      tf.keras.layers.Conv2D(16, (5, 3), activation='relu'),
      tf.keras.layers.Reshape((-1, 16 * 16)),
      tf.keras.layers.GRU(256, return_sequences=False, reset_after=True),
      tf.keras.layers.Flatten(), tf.keras.layers.Dropout(0.1),
      tf.keras.layers.Dense(128), tf.keras.layers.Dense(256, 'relu'),
      tf.keras.layers.Dense(12)])
  assert keras_model.count_params() == 467_772
  assert_logits_match_keras(model, keras_model, seed=1)


def test_crnn_streams_what_it_computes():
  config = crnn_config.get_config()
  config.model.update(preprocess='raw', cnn_filters='3,4', gru_units='5',
                      units1='6', act1="'relu'")
  model = build_model(config)
  params = _random_params(model.init(jax.random.key(0)))
  x = 0.1 * jax.random.normal(jax.random.key(4), (2, model.clip_length + 960))
  check_streaming_contract(model, params, x, atol=1e-4, check_grads=False)
