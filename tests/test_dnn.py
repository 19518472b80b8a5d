"""The paper's DNN: kws_streaming's parameter count and logits, streaming, export."""

import jax
import pytest

from experiments.configs import dnn as dnn_config
from kws_jax.layers import count_params
from kws_jax.models import build_model
from kws_jax.testing import check_streaming_contract
from test_recurrent import _random_params
from test_train import tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_logits_match_keras, train_and_export_tiny

SMALL = dict(units1='6', act1="'relu'", units2='8', act2="'relu'")


def make_config(**model_overrides):
  config = dnn_config.get_config()
  config.model.update(model_overrides)
  return config


def test_paper_dnn_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  model = build_model(make_config(preprocess='mfcc'))
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input((49, 20)),
      tf.keras.layers.Dense(64, 'relu'), tf.keras.layers.Dense(128, 'relu'),
      tf.keras.layers.Flatten(), tf.keras.layers.Reshape((49 * 128, 1)),
      tf.keras.layers.MaxPool1D(2, 2), tf.keras.layers.Flatten(),
      tf.keras.layers.Dropout(0.1),
      tf.keras.layers.Dense(128), tf.keras.layers.Dense(256, 'relu'),
      tf.keras.layers.Dense(12)])
  assert keras_model.count_params() == 447_308
  params = assert_logits_match_keras(model, keras_model)
  assert count_params(params) == 447_308


@pytest.mark.parametrize('preprocess', ['mfcc', 'raw'])
def test_dnn_streams_what_it_computes_on_clips(preprocess):
  model = build_model(make_config(preprocess=preprocess, **SMALL))
  params = _random_params(model.init(jax.random.key(0)))
  shape = (2, model.clip_length + 3 * model.block_size, *model.input_shape)
  x = jax.random.normal(jax.random.key(2), shape) * (
      0.1 if preprocess == 'raw' else 1.0)
  report = check_streaming_contract(model, params, x, atol=1e-4,
                                    check_grads=False)  # dense: test_layers
  assert report.full_shape == (2, 4, 12)


def test_dnn_refuses_a_pool_wider_than_the_clip():
  with pytest.raises(ValueError, match='pool'):
    build_model(make_config(pool_size=49 * 6 + 1, strides=1, **SMALL))


def test_dnn_trains_and_exports(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  manifest = train_and_export_tiny(tiny_data, str(tmp_path / 'run'),
                                   make_config(preprocess='raw', **SMALL).model)
  float_accuracy = manifest['tflite']['tflite_non_stream']['accuracy']
  int8_accuracy = manifest['tflite']['quantize_int8_tflite_non_stream'][
      'accuracy']
  assert abs(int8_accuracy['non_stream'] - float_accuracy['non_stream']) <= 10
