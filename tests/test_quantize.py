"""Quantization-aware training: TFLite's int8 rounding, in every form."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax.layers import (BatchNorm, Conv2D, Dense, DepthwiseConv2D,
                            Flatten, Residual, Sequential)
from kws_jax.layers import fake_quant
from kws_jax.layers.base import trainable_mask
from kws_jax.layers.core import Activation
from kws_jax.layers.recurrent import GRU, LSTM
from kws_jax.layers.quantize import (ActivationQuant, QuantizedWeights,
                                     fake_quantized, is_fake_quantized,
                                     strip_fake_quant)
from kws_jax.testing import check_streaming_contract
from test_train import tiny_data  # pylint: disable=unused-import


@pytest.mark.parametrize('lo, hi', [(0.0, 6.0), (-3.0, 5.0), (-1.7, 0.3),
                                    (-0.02, 0.05)])
def test_activations_round_as_tensorflow_fake_quant(lo, hi):
  tf = pytest.importorskip('tensorflow')
  width = hi - lo
  x = np.random.default_rng(0).uniform(lo - 0.2 * width, hi + 0.2 * width,
                                       20000).astype(np.float32)
  got = np.asarray(fake_quant.fake_quant_activation(
      jnp.asarray(x), jnp.asarray([lo, hi])))
  expected = tf.quantization.fake_quant_with_min_max_vars(
      x, lo, hi, num_bits=8).numpy()
  scale = (hi - lo) / 255
  assert np.max(np.abs(got - expected)) <= scale * 1.001
  # One level apart only where x sits on a rounding boundary.
  assert np.mean(np.isclose(got, expected, rtol=0, atol=scale * 1e-3)) >= 0.999
  assert len(np.unique(got)) == 256  # every int8 level is used


def test_a_range_is_widened_to_hold_zero_and_zero_is_exact():
  scale, zero_point = fake_quant.activation_params(jnp.asarray([2.0, 5.1]))
  assert float(scale) == pytest.approx(5.1 / 255)
  assert int(zero_point) == -128
  got = fake_quant.fake_quant_activation(jnp.asarray([0.0, -1.0, 9.0, 2.55]),
                                         jnp.asarray([2.0, 5.1]))
  np.testing.assert_allclose(got, [0.0, 0.0, 5.1, 2.56], atol=1e-6)
  # Not observed yet: values pass through.
  x = jnp.asarray([0.123, -7.0])
  np.testing.assert_array_equal(
      fake_quant.fake_quant_activation(x, fake_quant.empty_range()), x)


def test_weights_are_int8_per_output_channel_rounding_halves_away():
  w = jnp.asarray([[1.27, -0.005, 0.015], [-0.635, 0.01, -0.0149]])
  got = np.asarray(fake_quant.fake_quant_weights(w, (0,)))
  scales = np.array([1.27, 0.01, 0.015]) / 127
  q = got / scales
  np.testing.assert_allclose(q, np.round(q), atol=1e-4)
  # -0.635 / 0.01 = -63.5 rounds to -64, and 0.005 / (0.01 / 127) to -64 too.
  np.testing.assert_allclose(q, [[127, -64, 127], [-64, 127, -126]], atol=1e-4)


def test_gradients_pass_straight_through_inside_the_range():
  x = jnp.asarray([-2.0, 0.3, 0.7, 3.0])
  grad = jax.grad(lambda v: jnp.sum(fake_quant.fake_quant_activation(
      v, jnp.asarray([-1.0, 1.0]))))(x)
  np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 0.0])
  grad_w = jax.grad(lambda w: jnp.sum(
      fake_quant.fake_quant_weights(w, (0,)) ** 2))(jnp.asarray([[0.5], [1.0]]))
  assert np.all(np.asarray(grad_w) != 0)


def test_ranges_follow_the_batches():
  value_range = fake_quant.observe_range(fake_quant.empty_range(),
                                         jnp.asarray([-1.0, 3.0]), 0.9)
  np.testing.assert_allclose(value_range, [-1.0, 3.0])  # the first sets it
  value_range = fake_quant.observe_range(value_range,
                                         jnp.asarray([-2.0, 1.0]), 0.9)
  np.testing.assert_allclose(value_range, [-1.1, 2.8], rtol=1e-6)


def _conv_net() -> Sequential:
  return Sequential('net', (
      Conv2D('conv', 4, (3, 3), use_bias=False),
      BatchNorm('norm'), Activation('relu_0', 'relu'),
      DepthwiseConv2D('depthwise', (3, 1), activation='relu'),
      Conv2D('pointwise', 3, (1, 1), activation='tanh'),
      Flatten('flatten'), Dense('logits', 5)))


def _residual_net() -> Sequential:
  body = Sequential('body', (
      Conv2D('conv_a', 4, (3, 1), time_padding='causal', activation='relu'),
      Conv2D('conv_b', 4, (3, 1), time_padding='causal')))
  return Sequential('net', (
      Conv2D('stem', 4, (1, 1)),
      Residual('block', body, activation='relu'),
      Flatten('flatten'), Dense('logits', 3)))


def _recurrent_net(cell) -> Sequential:
  return Sequential('net', (cell, Dense('logits', 3)))


def test_quantizers_sit_where_the_export_rounds():
  net = fake_quantized(_conv_net())
  names = [layer.name for layer in net.layers]
  # Conv + folded BatchNorm + ReLU is one op; flatten keeps its input's scale.
  assert names == ['input_quant', 'conv', 'norm', 'relu_0', 'relu_0_quant',
                   'depthwise', 'depthwise_quant', 'pointwise',
                   'pointwise_quant', 'flatten', 'logits', 'logits_quant']
  assert all(isinstance(net.layers[names.index(n)], QuantizedWeights)
             for n in ('conv', 'depthwise', 'pointwise', 'logits'))
  assert is_fake_quantized(net) and not is_fake_quantized(_conv_net())
  gru = fake_quantized(_recurrent_net(GRU('gru', 6))).layers[1]
  assert gru.layer.quantize_state
  # Inside a residual block: each branch's outputs, and the sum after it.
  residual = fake_quantized(_residual_net())
  assert [layer.name for layer in residual.layers] == [
      'input_quant', 'stem', 'stem_quant', 'block', 'block_quant', 'flatten',
      'logits', 'logits_quant']
  assert [layer.name for layer in residual.layers[3].body.layers] == [
      'conv_a', 'conv_a_quant', 'conv_b', 'conv_b_quant']


def _trained_ranges(net, params, x):
  """Params whose ranges come from one training batch."""
  _, updates = net.apply_train(params, x, rng=jax.random.key(0))
  from kws_jax.layers.base import merge_updates  # pylint: disable=g-import-not-at-top
  return merge_updates(params, updates)


NETS = {
    'conv': (_conv_net, (6, 4)),
    'residual': (_residual_net, (5, 2)),
    'gru': (lambda: _recurrent_net(GRU('gru', 6)), (5,)),
    'lstm': (lambda: _recurrent_net(LSTM('lstm', 4)), (5,)),
}


@pytest.mark.parametrize('name', sorted(NETS))
def test_quantization_aware_nets_keep_the_streaming_contract(name):
  build, frame = NETS[name]
  net = fake_quantized(build())
  params = net.init(jax.random.key(1), frame)
  x = jax.random.normal(jax.random.key(2), (2, 12, *frame))
  params = _trained_ranges(net, params, x)
  ranges = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if 'quant_range' in jax.tree_util.keystr(path)]
  assert ranges and all(float(r[1]) > float(r[0]) for r in ranges)
  check_streaming_contract(net, params, x, atol=1e-5, check_grads=False)


@pytest.mark.parametrize('name', sorted(NETS))
def test_the_stripped_net_is_the_float_net_with_int8_kernels(name):
  build, frame = NETS[name]
  float_net = build()
  net = fake_quantized(float_net)
  params = net.init(jax.random.key(1), frame)
  x = jax.random.normal(jax.random.key(2), (2, 12, *frame))
  params = _trained_ranges(net, params, x)
  stripped, stripped_params = strip_fake_quant(net, params)
  assert stripped == float_net
  assert (jax.tree.structure(stripped_params) ==
          jax.tree.structure(float_net.init(jax.random.key(1), frame)))
  for path, leaf in jax.tree_util.tree_leaves_with_path(stripped_params):
    if jax.tree_util.keystr(path).endswith("kernel']") and leaf.ndim >= 2:
      axes = (tuple(range(leaf.ndim - 2)) if 'depthwise' in
              jax.tree_util.keystr(path) else tuple(range(leaf.ndim - 1)))
      q = np.asarray(leaf / fake_quant.weight_scale(leaf, axes))
      np.testing.assert_allclose(q, np.round(q), atol=1e-3)
      assert np.max(np.abs(q)) == pytest.approx(127, abs=1e-3)
  # Without the activation quantizers, the stripped net is the QAT net's
  # weights in float: equal to the QAT net with its ranges not observed,
  # but for a recurrent layer's gates, which keep their fixed int8 grids.
  unobserved = jax.tree_util.tree_map_with_path(
      lambda p, v: (fake_quant.empty_range() if 'quant_range' in
                    jax.tree_util.keystr(p) else v), params)
  np.testing.assert_allclose(stripped.apply(stripped_params, x),
                             net.apply(unobserved, x),
                             atol=0.05 if name in ('gru', 'lstm') else 1e-5)


def test_quantization_aware_outputs_are_on_the_int8_grid():
  net = fake_quantized(_conv_net())
  params = net.init(jax.random.key(1), (6, 4))
  x = jax.random.normal(jax.random.key(2), (2, 12, 6, 4))
  params = _trained_ranges(net, params, x)
  logits = net.apply(params, x)
  scale, zero_point = fake_quant.activation_params(
      params['logits_quant']['quant_range'])
  q = np.asarray(logits / scale + zero_point)
  np.testing.assert_allclose(q, np.round(q), atol=1e-3)
  # The ranges are statistics, not weights.
  mask = trainable_mask(params)
  assert not mask['logits_quant']['quant_range']
  assert mask['logits']['kernel']


def test_a_quantization_aware_config_builds_the_fake_quantized_model():
  from kws_jax.models import build_model  # pylint: disable=g-import-not-at-top
  from test_train import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config('unused')
  config.quantization.aware = 1
  config.quantization.range_momentum = 0.9
  model = build_model(config)
  assert model.body.layers[0] == ActivationQuant('input_quant', 0.9)
  config.quantization.aware = 0
  assert not is_fake_quantized(build_model(config).net)


def test_weights_cannot_be_quantized_twice():
  layer = QuantizedWeights(Dense('d', 2))
  with pytest.raises(ValueError, match='d: its weights are quantized already'):
    QuantizedWeights(layer)
  assert dataclasses.replace(layer).name == 'd'


def test_quantization_aware_training_starts_from_a_float_run(tiny_data,
                                                              tmp_path):
  from kws_jax.models import build_model  # pylint: disable=g-import-not-at-top
  from kws_jax.train import load_run, train_and_evaluate  # pylint: disable=g-import-not-at-top
  from kws_jax.train.loop import params_from_run  # pylint: disable=g-import-not-at-top
  from test_train import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data)
  config.schedule.update(how_many_training_steps='2', learning_rate='0.01')
  config.train.eval_step_interval = 2
  float_run = str(tmp_path / 'float')
  train_and_evaluate(config, float_run, progress=False)
  _, _, float_params = load_run(float_run)
  config.quantization.aware = 1
  qat = build_model(config)
  params = params_from_run(qat.init(jax.random.key(5)), float_run)
  np.testing.assert_array_equal(params['conv2d_0']['kernel'],
                                float_params['conv2d_0']['kernel'])
  np.testing.assert_array_equal(params['input_quant']['quant_range'], [0, 0])
  # Training from it: one step moves the weights, the ranges get observed.
  config.train.init_from = float_run
  config.schedule.how_many_training_steps = '1'
  config.train.eval_step_interval = 1
  qat_run = str(tmp_path / 'qat')
  train_and_evaluate(config, qat_run, progress=False)
  _, _, trained = load_run(qat_run, 'last')
  assert float(trained['input_quant']['quant_range'][1]) > 0
  change = np.abs(np.asarray(trained['conv2d_0']['kernel']) -
                  np.asarray(float_params['conv2d_0']['kernel']))
  assert 0 < change.max() < 0.05
  # Another model's run is refused, naming the weight.
  config.model.units2 = '16'
  with pytest.raises(ValueError, match=r"init_from: .* holds \['dense_0'\]"
                     r"\['bias'\] with shape \(8,\), expected \(16,\)"):
    params_from_run(build_model(config).init(jax.random.key(0)), float_run)


@pytest.mark.parametrize('function, reference, scale, zero_point', [
    (fake_quant.sigmoid, jax.nn.sigmoid, 1 / 256, -128),
    (fake_quant.tanh, jnp.tanh, 1 / 128, 0)])
def test_gates_round_to_the_fixed_grid_of_tflites_int8_kernels(
    function, reference, scale, zero_point):
  """TFLite's int8 LOGISTIC and TANH write fixed quantizations; so do the
  gates of a quantization-aware GRU or LSTM."""
  x = jnp.linspace(-8.0, 8.0, 4001)
  got = np.asarray(function(x))
  q = got / scale + zero_point
  np.testing.assert_allclose(q, np.round(q), atol=1e-4)
  assert q.min() >= -128 - 1e-4 and q.max() <= 127 + 1e-4
  assert np.max(np.abs(got - np.asarray(reference(x)))) <= scale
  assert len(np.unique(np.round(q))) >= 250


def test_a_quantization_aware_gru_rounds_its_gates():
  x = jax.random.normal(jax.random.key(3), (2, 5, 6))
  plain = GRU('gru', 8)
  aware = dataclasses.replace(plain, quantize_state=True)
  params = aware.init(jax.random.key(4), (6,))
  weights = {k: v for k, v in params.items() if k != 'state_quant'}
  # Ranges not observed yet: only the gates round, by under one level.
  difference = np.abs(np.asarray(aware.apply(params, x)) -
                      np.asarray(plain.apply(weights, x)))
  assert 0 < difference.max() < 0.05
