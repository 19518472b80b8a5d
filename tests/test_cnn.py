"""The paper's CNN: published shapes and sizes, streaming, Keras parity, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import cnn as cnn_config
from kws_jax import keras_reference
from kws_jax.layers import count_params, scan_steps
from kws_jax.models import build_model, params_from_keras
from kws_jax.summary import model_summary
from kws_jax.testing import check_streaming_contract

# Published kws_streaming summary of the paper CNN on [49, 20] MFCCs.
PAPER_SHAPES = {
    'conv2d_0': (47, 18, 64), 'conv2d_1': (43, 16, 64),
    'conv2d_2': (35, 14, 64), 'conv2d_3': (31, 12, 64),
    'conv2d_4': (23, 11, 128), 'conv2d_5': (19, 11, 64),
    'conv2d_6': (1, 11, 128), 'flatten': (1, 1408), 'dense_0': (1, 128),
    'dense_1': (1, 256), 'logits': (1, 14),
}


def make_config(**model_overrides):
  config = cnn_config.get_config()
  config.model.update(model_overrides)
  return config


@pytest.fixture(scope='module')
def mfcc_model():
  model = build_model(make_config(preprocess='mfcc'))
  return model, model.init(jax.random.key(0))


@pytest.fixture(scope='module')
def raw_model():
  model = build_model(make_config(preprocess='raw'))
  return model, model.init(jax.random.key(0))


def test_reproduces_published_summary():
  model = build_model(make_config(preprocess='mfcc', label_count=14))
  shapes = {}
  for layer, in_shape, length in model.net.shapes(model.input_shape, 49):
    shapes[layer.name] = (layer.output_length(length),
                          *layer.output_shape(in_shape))
  assert {k: shapes[k] for k in PAPER_SHAPES} == PAPER_SHAPES
  assert count_params(model.init(jax.random.key(0))) == 607_246
  assert 'Total params: 607,246' in model_summary(model)


@pytest.mark.parametrize('preprocess, labels, expected', [
    ('mfcc', 14, 607_246), ('mfcc', 12, 606_732), ('raw', 12, 606_732)])
def test_parameter_count(preprocess, labels, expected):
  model = build_model(make_config(preprocess=preprocess, label_count=labels))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0)))
  assert count_params(params) == expected
  assert params['conv2d_1']['kernel'].shape == (5, 3, 64, 64)  # Keras layout
  assert params['dense_0']['kernel'].shape == (1408, 128)


def test_streaming_contract_on_features(mfcc_model):
  model, params = mfcc_model
  x = jax.random.normal(jax.random.key(1), (2, 60, 20))
  report = check_streaming_contract(model, params, x, check_grads=False)
  assert report.full_shape == (2, 12, 12)
  assert report.stream_shape == (2, 60, 12)


def test_streaming_contract_on_raw_audio(raw_model):
  model, params = raw_model
  audio = 0.1 * jax.random.normal(jax.random.key(1), (2, 16000 + 5 * 320))
  report = check_streaming_contract(model, params, audio, check_grads=False)
  assert report.full_shape == (2, 6, 12)
  assert model.block_size == 320 and model.lookback == 49


def test_gradients_of_both_forms_agree_on_a_small_cnn():
  config = make_config(preprocess='mfcc', cnn_filters='4,4,6',
                       cnn_kernel_size='(3,3),(5,3),(4,1)',
                       cnn_act="'relu','relu','relu'",
                       cnn_dilation_rate='(1,1),(2,1),(1,1)',
                       cnn_strides='(1,1),(1,2),(1,1)', units2='8',
                       act2="'relu'")
  config.data.clip_duration_ms = 400.0
  model = build_model(config)
  params = model.init(jax.random.key(0))
  report = check_streaming_contract(
      model, params, jax.random.normal(jax.random.key(2), (2, 30, 20)))
  assert report.grad_diff < 1e-5


def test_49th_step_from_zero_state_equals_non_streaming(raw_model):
  """Stream 1 s in 20 ms steps: the last step's logits are the clip's logits."""
  model, params = raw_model
  audio = 0.1 * jax.random.normal(jax.random.key(3), (3, 16000))
  clip_logits = jax.jit(model.logits)(params, audio)
  state = model.init_state(3)
  step = jax.jit(model.step)
  for i in range(50):
    state, logits = step(params, state, audio[:, i * 320:(i + 1) * 320])
  assert logits.shape == (3, 1, 12)
  np.testing.assert_allclose(logits[:, 0], clip_logits, atol=1e-5)


def test_every_step_of_a_long_stream_gives_its_last_second(mfcc_model):
  """On a 3 s input each streamed frame equals the 1 s window ending there."""
  model, params = mfcc_model
  features = jax.random.normal(jax.random.key(4), (2, 150, 20))
  _, streamed = jax.jit(lambda p, x: scan_steps(model, p, x))(params, features)
  logits = jax.jit(model.logits)
  for end in (49, 50, 77, 150):
    window = features[:, end - 49:end]
    np.testing.assert_allclose(streamed[:, end - 1], logits(params, window),
                               atol=1e-5)


def test_matches_kws_streaming_keras_cnn(mfcc_model):
  """The same weights in the Keras CNN of kws_streaming give the same logits."""
  tf = pytest.importorskip('tensorflow')
  model, params = mfcc_model
  params = jax.tree.map(
      lambda p: p + 0.01 * jax.random.normal(jax.random.key(5), p.shape),
      params)  # non-zero biases
  keras_model = keras_reference.paper_cnn(tf, cnn_config.get_config().model.dropout1)
  for name, weights in params.items():
    keras_model.get_layer(name).set_weights(
        [np.asarray(weights['kernel']), np.asarray(weights['bias'])])
  features = np.random.default_rng(0).standard_normal((4, 49, 20))
  expected = keras_model(features.astype(np.float32)).numpy()
  actual = model.logits(params, jnp.asarray(features, jnp.float32))
  np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_loads_keras_weights_in_layer_order(mfcc_model):
  tf = pytest.importorskip('tensorflow')
  model, _ = mfcc_model
  keras_model = keras_reference.paper_cnn(tf, cnn_config.get_config().model.dropout1)
  keras_model.get_layer('dense_0').bias.assign(tf.fill([128], 0.05))
  weights = [w.numpy() for w in keras_model.trainable_weights]
  params = params_from_keras(model, weights)
  assert count_params(params) == 606_732
  np.testing.assert_array_equal(params['dense_0']['bias'], np.float32(0.05))
  features = np.random.default_rng(1).standard_normal((4, 49, 20))
  features = features.astype(np.float32)
  np.testing.assert_allclose(model.logits(params, jnp.asarray(features)),
                             keras_model(features).numpy(), atol=1e-4)


def _drop_last(arrays):
  return arrays[:-1]


def _shrink_conv2d_1_bias(arrays):
  return arrays[:3] + [np.zeros(32, np.float32)] + arrays[4:]


@pytest.mark.parametrize('corrupt, message', [
    (_drop_last, r'got 19 Keras weight arrays, expected 20: conv2d_0/kernel '
     r'\(3, 3, 1, 64\), conv2d_0/bias \(64,\), conv2d_1/kernel'),
    (_shrink_conv2d_1_bias, r'Keras weight 3 has shape \(32,\), expected '
     r'\(64,\) for conv2d_1/bias'),
])
def test_keras_weights_of_another_model_are_refused(mfcc_model, corrupt,
                                                    message):
  model, params = mfcc_model
  arrays = [np.asarray(params[layer.name][key])
            for layer in model.net.layers if layer.name in params
            for key in ('kernel', 'bias')]
  assert len(arrays) == 20
  with pytest.raises(ValueError, match=message):
    params_from_keras(model, corrupt(arrays))


def test_training_mode_applies_dropout(mfcc_model):
  model, params = mfcc_model
  x = jax.random.normal(jax.random.key(6), (4, 49, 20))
  eval_logits = model.logits(params, x)
  a = model.logits(params, x, train=True, rng=jax.random.key(0))
  b = model.logits(params, x, train=True, rng=jax.random.key(1))
  assert float(jnp.abs(a - b).max()) > 1e-3
  assert float(jnp.abs(a - eval_logits).max()) > 1e-3
  np.testing.assert_array_equal(model.logits(params, x), eval_logits)


# -- Bad input ----------------------------------------------------------------


def test_step_with_wrong_frame_names_model_and_shapes(raw_model):
  model, params = raw_model
  state = model.init_state(1)
  with pytest.raises(ValueError) as error:
    model.step(params, state, jnp.zeros((1, 1, 320)))
  assert str(error.value) == (
      'cnn: input frame has shape (1, 1, 320), expected [batch, 320] or n '
      'blocks [batch, n * 320] (a batch axis first: frame[None] for one '
      'stream).')
  with pytest.raises(ValueError, match='cnn: input frame has dtype int16'):
    model.step(params, state, jnp.zeros((1, 320), jnp.int16))


def test_step_with_wrong_state_lists_the_entries(mfcc_model):
  model, params = mfcc_model
  state = model.init_state(1)
  state['conv2d_1'] = jnp.zeros((1, 5, 18, 64))
  del state['conv2d_6']
  with pytest.raises(ValueError) as error:
    model.step(params, state, jnp.zeros((1, 1, 20)))
  message = str(error.value)
  assert message.startswith('cnn: streaming state does not match the model')
  assert 'conv2d_1: expected (1, 4, 18, 64) float32, got (1, 5, 18, 64) ' \
         'float32' in message
  assert 'conv2d_6: expected (1, 18, 11, 64) float32, got no entry' in message


def test_non_streaming_input_checks(mfcc_model):
  model, params = mfcc_model
  with pytest.raises(ValueError, match=r'cnn: input has shape \(2, 49, 10\)'):
    model.apply(params, jnp.zeros((2, 49, 10)))
  with pytest.raises(ValueError, match='input has 40 frames in time, expected '
                     'at least 49'):
    model.apply(params, jnp.zeros((2, 40, 20)))


@pytest.mark.parametrize('overrides, data, fragments', [
    # kws_streaming users met "Negative dimension size caused by subtracting
    # 5 from 4" after these two changes.
    (dict(), dict(window_stride_ms=40.0, dct_num_features=10),
     ['25 frames of 10 features', 'conv2d_4: kernel 5 with dilation 2 spans '
      '9 frames in time, but only 7 remain in the time axis']),
    (dict(cnn_kernel_size='(3,3),(5,3),(5,3),(5,3),(5,13),(5,1),(10,1)'), {},
     ['conv2d_4: kernel 13 with dilation 1 spans 13 features, but only 12 '
      'remain in the feature axis']),
    (dict(cnn_filters='64,64'), {},
     ['cnn_filters has 2, cnn_kernel_size has 7']),
    (dict(units2='128,256,512'), {}, ['units2 has 3, act2 has 2']),
    (dict(cnn_kernel_size='(3,3),(5,3'), {},
     ["model.cnn_kernel_size: cannot parse '(3,3),(5,3'"]),
    (dict(cnn_act='relu,relu,relu,relu,relu,relu,rleu'), {},
     ["conv2d_6: unknown activation 'rleu'"]),
    (dict(cnn_strides='(1,1),(2,1),(1,1),(1,1),(1,1),(1,1),(1,1)'), {},
     ['conv2d_5: kernel 5 with dilation 1 spans 5 frames in time, but only '
      '2 remain']),
    (dict(compute_dtype='float16'), {}, ["compute_dtype is 'float16'"]),
    (dict(name='resnet'), {}, ["model.name is 'resnet'"]),
    (dict(preprocess='mel'), {}, ["model.preprocess is 'mel'"]),
])
def test_bad_configs_fail_when_built(overrides, data, fragments):
  config = make_config(**overrides)
  config.frontend.update(data)
  with pytest.raises(ValueError) as error:
    build_model(config)
  for fragment in fragments:
    assert fragment in str(error.value)


@pytest.mark.parametrize('xla_flags', [
    '', '--xla_cpu_experimental_ynn_fusion_type=dot',
    '--xla_cpu_experimental_ynn_fusion_type=reduce'])
def test_building_a_model_reads_no_environment(xla_flags, monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', xla_flags)

  def implementations(model):
    return {layer.implementation for layer in model.body.layers
            if hasattr(layer, 'implementation')}

  assert implementations(build_model(make_config())) == {'im2col'}
  assert implementations(build_model(
      make_config(), auto_conv_implementation='xla')) == {'xla'}
  assert implementations(build_model(
      make_config(conv_implementation='xla'))) == {'xla'}


def test_auto_keeps_depthwise_taps_and_xla_exports_depthwise_convolutions():
  from experiments.configs import ds_cnn as ds_cnn_config  # pylint: disable=g-import-not-at-top
  config = ds_cnn_config.get_config()

  def depthwise(model):
    return {layer.implementation for layer in model.body.layers
            if type(layer).__name__ == 'DepthwiseConv2D'}

  assert depthwise(build_model(config, auto_conv_implementation='xla')) == {
      'taps'}
  config.model.conv_implementation = 'xla'
  assert depthwise(build_model(config)) == {'xla'}
