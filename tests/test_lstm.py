"""LSTM: Keras' and tf1's peephole cells, the paper's model, streaming, export."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import lstm as lstm_config
from kws_jax import layers
from kws_jax.layers import count_params, scan_steps
from kws_jax.models import build_model
from kws_jax.testing import check_streaming_contract
from test_recurrent import _random_params
from test_train import tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_logits_match_keras, train_and_export_tiny

SMALL = dict(lstm_units='6', num_proj='4')


def make_config(**model_overrides):
  config = lstm_config.get_config()
  config.model.update(model_overrides)
  return config


def keras_peephole_rnn(tf, units: int, num_proj: int):
  """tf1's ``LSTMCell(use_peepholes=True, num_proj=...)`` as a Keras 3 RNN.

  Keras 3 has no peephole cell, so the test writes tf1's equations and
  weight order (kernel over concat(x, m), bias, w_f/w_i/w_o diagonals,
  projection kernel) as a Keras cell.
  """

  class PeepholeCell(tf.keras.layers.Layer):

    def __init__(self):
      super().__init__()
      self.state_size = [units, num_proj]
      self.output_size = num_proj

    def build(self, input_shape):
      width = 4 * units
      self.kernel = self.add_weight((input_shape[-1] + num_proj, width),
                                    name='kernel')
      self.bias = self.add_weight((width,), name='bias', initializer='zeros')
      self.diagonals = [self.add_weight((units,), name=name)
                        for name in ('w_f_diag', 'w_i_diag', 'w_o_diag')]
      self.projection = self.add_weight((units, num_proj),
                                        name='projection_kernel')

    def call(self, inputs, states):
      c_prev, m_prev = states
      gates = tf.matmul(tf.concat([inputs, m_prev], 1), self.kernel) + self.bias
      i, j, f, o = tf.split(gates, 4, axis=1)
      w_f, w_i, w_o = self.diagonals
      c = (tf.sigmoid(f + 1.0 + w_f * c_prev) * c_prev +
           tf.sigmoid(i + w_i * c_prev) * tf.tanh(j))
      m = tf.matmul(tf.sigmoid(o + w_o * c) * tf.tanh(c), self.projection)
      return m, [c, m]

  return tf.keras.layers.RNN(PeepholeCell(), return_sequences=False)


def test_lstm_cell_matches_keras():
  tf = pytest.importorskip('tensorflow')
  lstm = layers.LSTM('lstm', 5)
  params = _random_params(lstm.init(jax.random.key(0), (3,)))
  keras_lstm = tf.keras.layers.LSTM(5, return_sequences=True)
  keras_lstm.build((2, 7, 3))
  keras_lstm.set_weights([np.asarray(params[k])
                          for k in lstm.keras_weight_names()])
  x = jax.random.normal(jax.random.key(1), (2, 7, 3))
  np.testing.assert_allclose(lstm.apply(params, x),
                             keras_lstm(np.asarray(x)).numpy(), atol=1e-5)


def test_paper_lstm_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  model = build_model(make_config(preprocess='mfcc'))
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input((49, 20)), keras_peephole_rnn(tf, 500, 200),
      tf.keras.layers.Flatten(), tf.keras.layers.Dropout(0.3),
      tf.keras.layers.Dense(12)])
  assert keras_model.count_params() == 545_912
  params = assert_logits_match_keras(model, keras_model)
  assert count_params(params) == 545_912


@pytest.mark.parametrize('peepholes,num_proj', [(False, None), (True, None),
                                                (True, 3)])
@pytest.mark.parametrize('time', [1, 9])
def test_lstm_contract(peepholes, num_proj, time):
  lstm = layers.LSTM('lstm', 4, use_peepholes=peepholes, num_proj=num_proj)
  params = _random_params(lstm.init(jax.random.key(0), (3,)))
  report = check_streaming_contract(
      lstm, params, jax.random.normal(jax.random.key(2), (2, time, 3)))
  assert report.full_shape == (2, time, num_proj or 4)


def test_lstm_model_streams_and_its_last_clip_frame_is_the_clip():
  config = make_config(preprocess='mfcc', lstm_units='6,5', num_proj='4',
                       return_sequences='1,0')
  config.data.clip_duration_ms = 400  # 19 frames: the unrolled cells compile
  model = build_model(config)         # faster
  params = _random_params(model.init(jax.random.key(0)))
  clip = jax.random.normal(jax.random.key(3), (2, model.clip_length, 20))
  longer = jnp.concatenate([clip, clip[:, :3]], axis=1)
  check_streaming_contract(model, params, longer, atol=1e-4,
                           check_grads=False)  # checked on the layer
  _, streamed = scan_steps(model, params, clip)
  np.testing.assert_allclose(streamed[:, -1], model.logits(params, clip),
                             atol=1e-5)


def test_lstm_refuses_what_it_cannot_build():
  with pytest.raises(ValueError, match='lstm: num_proj is 3, but the '
                     'projection needs use_peepholes=True'):
    layers.LSTM('lstm', 4, num_proj=3)
  with pytest.raises(ValueError, match='lstm_units has 3, num_proj has 2'):
    build_model(make_config(lstm_units='4,4,4', num_proj='2,2',
                            return_sequences='1,1,0'))
  with pytest.raises(ValueError, match='return_sequences has 1 entries'):
    build_model(make_config(lstm_units='4,4', num_proj='2'))
  with pytest.raises(ValueError, match='lstm: state has no \'c\' entry'):
    lstm = layers.LSTM('lstm', 4)
    lstm.step(lstm.init(jax.random.key(0), (3,)), {'h': jnp.zeros((1, 4))},
              jnp.zeros((1, 1, 3)))


@pytest.mark.long
def test_lstm_trains_and_exports(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  manifest = train_and_export_tiny(tiny_data, str(tmp_path / 'run'),
                                   make_config(preprocess='raw', **SMALL).model)
  float_accuracy = manifest['tflite']['tflite_non_stream']['accuracy']
  int8_accuracy = manifest['tflite']['quantize_int8_tflite_non_stream'][
      'accuracy']
  assert abs(int8_accuracy['non_stream'] - float_accuracy['non_stream']) <= 10
