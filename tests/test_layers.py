"""Every layer obeys the streaming contract and matches its Keras counterpart."""

import fractions
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax import layers
from kws_jax.testing import check_streaming_contract

CONV_CASES = {
    'k3x3': dict(kernel_size=(3, 3)),
    'k5x3_dilated_t2': dict(kernel_size=(5, 3), dilation=(2, 1)),
    'k5x2_feature_stride2': dict(kernel_size=(5, 2), strides=(1, 2)),
    'k4x3_dilated_3x2': dict(kernel_size=(4, 3), dilation=(3, 2)),
    'k1x3_stateless': dict(kernel_size=(1, 3)),
    'k10x1': dict(kernel_size=(10, 1), dilation=(2, 1)),
    'causal_same': dict(kernel_size=(3, 3), time_padding='causal',
                        feature_padding='same'),
    'causal_same_stride2': dict(kernel_size=(5, 4), dilation=(1, 2),
                                strides=(1, 2), time_padding='causal',
                                feature_padding='same'),
    'xla_dilated': dict(kernel_size=(4, 3), dilation=(3, 2),
                        implementation='xla'),
    # Pointwise: its gradients are matmuls (lax_conv._pointwise_gradients).
    'xla_pointwise': dict(kernel_size=(1, 1), implementation='xla'),
    # Strided in time: blocks of the stride, each valid/causal/semicausal.
    't_stride2_k4_valid': dict(kernel_size=(4, 3), strides=(2, 1)),
    't_stride2_k3_valid': dict(kernel_size=(3, 3), strides=(2, 1)),
    't_stride2_causal': dict(kernel_size=(3, 3), strides=(2, 1),
                             time_padding='causal'),
    't_stride3_k5_semicausal': dict(kernel_size=(5, 2), strides=(3, 1),
                                    time_padding='semicausal'),
    't_stride3_k2_semicausal': dict(kernel_size=(2, 3), strides=(3, 1),
                                    time_padding='semicausal'),
    't_stride2_dilated_xla': dict(kernel_size=(3, 3), dilation=(2, 1),
                                  strides=(2, 2), implementation='xla'),
}


def _inputs(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize('time', [24, 37])
@pytest.mark.parametrize('case', list(CONV_CASES))
def test_conv2d_contract(case, time):
  conv = layers.Conv2D('conv', 6, activation='relu', **CONV_CASES[case])
  time -= time % conv.block_size
  params = conv.init(jax.random.key(1), (10, 3))
  report = check_streaming_contract(conv, params, _inputs((3, time, 10, 3)))
  assert report.stream_shape[1] == time // conv.block_size
  assert report.full_shape[1] == time // conv.block_size - conv.lookback


@pytest.mark.parametrize('case, lookback, state_frames', [
    ('k3x3', 2, 2), ('causal_same', 0, 2), ('t_stride2_k4_valid', 1, 2),
    ('t_stride2_k3_valid', 1, 2), ('t_stride2_causal', 0, 2),
    ('t_stride3_k5_semicausal', 0, 2), ('t_stride3_k2_semicausal', 0, 0)])
def test_conv2d_time_geometry(case, lookback, state_frames):
  conv = layers.Conv2D('conv', 2, **CONV_CASES[case])
  assert conv.lookback == lookback
  assert conv.window.state_frames == state_frames
  assert conv.output_ratio == fractions.Fraction(1, conv.block_size)


KERAS_CASES = [name for name, c in CONV_CASES.items()
               # Keras cannot stride and dilate at once.
               if max(c.get('strides', (1, 1))) == 1
               or max(c.get('dilation', (1, 1))) == 1]


@pytest.mark.parametrize('case', KERAS_CASES)
def test_conv2d_matches_keras(case):
  """Keras Conv2D with the same kernel: the layout loads kws_streaming weights."""
  tf = pytest.importorskip('tensorflow')
  config = CONV_CASES[case]
  conv = layers.Conv2D('conv', 6, activation='relu', **config)
  params = conv.init(jax.random.key(2), (10, 3))
  params['bias'] = jax.random.normal(jax.random.key(3), (6,))
  x = _inputs((2, 30, 10, 3))
  padded = conv.window.full_window(x)  # time: zeros or a crop on the left
  padded = jnp.pad(padded, ((0, 0), (0, 0), conv._feature_pads(), (0, 0)))
  keras_conv = tf.keras.layers.Conv2D(
      6, config['kernel_size'], strides=config.get('strides', (1, 1)),
      dilation_rate=config.get('dilation', (1, 1)), activation='relu',
      padding='valid')
  keras_conv.build(padded.shape)
  keras_conv.set_weights([np.asarray(params['kernel']),
                          np.asarray(params['bias'])])
  expected = keras_conv(np.asarray(padded)).numpy()
  np.testing.assert_allclose(conv.apply(params, x), expected, atol=1e-5)


@pytest.mark.parametrize('case', list(CONV_CASES))
def test_conv2d_implementations_agree(case):
  config = dict(CONV_CASES[case], implementation='im2col')
  x = _inputs((2, 20, 12, 4))
  im2col = layers.Conv2D('c', 5, **config)
  xla = layers.Conv2D('c', 5, **dict(config, implementation='xla'))
  params = im2col.init(jax.random.key(0), (12, 4))
  np.testing.assert_allclose(im2col.apply(params, x), xla.apply(params, x),
                             atol=1e-5)


@pytest.mark.parametrize('case', ['k5x3_dilated_t2', 'k5x2_feature_stride2',
                                  'k4x3_dilated_3x2', 'k1x3_stateless'])
def test_custom_conv_vjp_equals_autodiff(case):
  """The mixed-precision VJP, run in float32, equals autodiff of the forward."""
  from kws_jax.layers import im2col  # pylint: disable=g-import-not-at-top
  config = CONV_CASES[case]
  dilation, stride = config.get('dilation', (1, 1)), config.get(
      'strides', (1, 1))[1]
  x = _inputs((2, 20, 13, 3))
  kernel = _inputs((*config['kernel_size'], 3, 5), seed=1)

  def loss(conv, x, kernel):
    return jnp.sum(jnp.sin(conv(x, kernel, dilation, stride, 'float32')))

  custom = jax.grad(functools.partial(loss, im2col._conv_valid_mixed),
                    argnums=(0, 1))(x, kernel)
  autodiff = jax.grad(functools.partial(
      loss, lambda *a: im2col._conv_forward(*a)[0]), argnums=(0, 1))(x, kernel)
  for c, a in zip(custom, autodiff):
    np.testing.assert_allclose(c, a, atol=2e-5)


@pytest.mark.parametrize('case', ['k5x3_dilated_t2', 'k5x2_feature_stride2',
                                  'k4x3_dilated_3x2', 'k1x3_stateless',
                                  'k10x1', 'xla_pointwise'])
@pytest.mark.parametrize('compute_dtype', [None, 'bfloat16'])
@pytest.mark.parametrize('channels', [3, 24])  # kernel gradient by im2col; XLA
def test_padding_free_lax_conv_gradient_equals_autodiff(case, compute_dtype,
                                                        channels):
  """lax_conv's gradients equal autodiff of lax.conv (same rounding)."""
  from kws_jax.layers import lax_conv  # pylint: disable=g-import-not-at-top
  config = CONV_CASES[case]
  dilation = config.get('dilation', (1, 1))
  strides = config.get('strides', (1, 1))
  x = _inputs((2, 22, 13, channels))
  kernel = _inputs((*config['kernel_size'], channels, 5), seed=1)

  def loss(conv, x, kernel):
    return jnp.sum(jnp.sin(conv(x, kernel, dilation, strides, 1,
                                compute_dtype)))

  ours = jax.grad(functools.partial(loss, lax_conv.conv_valid),
                  argnums=(0, 1))(x, kernel)
  autodiff = jax.grad(functools.partial(loss, lax_conv._lax_conv),
                      argnums=(0, 1))(x, kernel)
  tolerance = 2e-5 if compute_dtype is None else 2e-2
  for o, a in zip(ours, autodiff):
    assert o.shape == a.shape
    np.testing.assert_allclose(o, a, atol=tolerance * float(jnp.max(
        jnp.abs(a))))


def test_bfloat16_compute_is_close_to_float32():
  x = _inputs((2, 20, 12, 4))
  f32 = layers.Conv2D('c', 8, (3, 3))
  bf16 = layers.Conv2D('c', 8, (3, 3), compute_dtype='bfloat16')
  params = f32.init(jax.random.key(0), (12, 4))
  y32, y16 = f32.apply(params, x), bf16.apply(params, x)
  assert y16.dtype == jnp.float32
  relative = jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32)
  assert 1e-4 < float(relative) < 1e-2  # rounded, yet close


def _step_flops(layer, params, in_shape) -> float:
  """XLA's count of floating-point ops in one jitted ``step`` at batch 1."""
  state = layer.init_state(1, in_shape)
  frame = jnp.zeros((1, layer.block_size, *in_shape))
  compiled = jax.jit(lambda s, x: layer.step(params, s, x)).lower(
      state, frame).compile()
  return compiled.cost_analysis()['flops']


@pytest.mark.parametrize('case', list(CONV_CASES))
def test_conv2d_step_macs_match_xla_cost_analysis(case):
  kwargs = dict(CONV_CASES[case], implementation='xla', use_bias=False)
  layer = layers.Conv2D('conv', 8, **kwargs)
  params = layer.init(jax.random.key(0), (10, 4))
  macs = layer.step_macs((10, 4))
  taps = layer.kernel_size[0] * layer.kernel_size[1]
  assert macs == layer.output_shape((10, 4))[0] * 8 * taps * 4
  if layer.feature_padding == 'valid':
    assert 2 * macs == _step_flops(layer, params, (10, 4))
  else:  # XLA leaves out the taps on padding; we count what a dense conv does
    assert _step_flops(layer, params, (10, 4)) < 2 * macs


def test_dense_step_macs_match_xla_cost_analysis():
  layer = layers.Dense('dense', 24, use_bias=False)
  params = layer.init(jax.random.key(0), (40,))
  assert layer.step_macs((40,)) == 40 * 24
  assert 2 * layer.step_macs((40,)) == _step_flops(layer, params, (40,))
  assert layers.Flatten('flatten', 3).step_macs((5, 2)) == 0


@pytest.mark.parametrize('window, time', [(1, 5), (3, 12), (6, 17)])
def test_flatten_contract_and_keras_order(window, time):
  flatten = layers.Flatten('flatten', window)
  x = _inputs((2, time, 4, 3))
  check_streaming_contract(flatten, {}, x)
  y = flatten.apply({}, x)
  assert y.shape == (2, time - window + 1, window * 12)
  # Each output frame is Keras' Flatten of the window [window, 4, 3].
  np.testing.assert_array_equal(y[:, -1], x[:, -window:].reshape(2, -1))


@pytest.mark.parametrize('activation', ['linear', 'relu', 'tanh'])
def test_dense_contract_and_keras(activation):
  tf = pytest.importorskip('tensorflow')
  dense = layers.Dense('dense', 7, activation)
  params = dense.init(jax.random.key(0), (5,))
  params['bias'] = jnp.arange(7, dtype=jnp.float32) / 7
  x = _inputs((3, 6, 5))
  check_streaming_contract(dense, params, x)
  keras_dense = tf.keras.layers.Dense(7, activation=activation)
  keras_dense.build((None, 5))
  keras_dense.set_weights([np.asarray(params['kernel']),
                           np.asarray(params['bias'])])
  np.testing.assert_allclose(dense.apply(params, x),
                             keras_dense(np.asarray(x)).numpy(), atol=1e-5)


@pytest.mark.parametrize('layer', [
    layers.Activation('act', 'relu'),
    layers.Dropout('dropout', 0.5),
    layers.ExpandDims(),
])
def test_stateless_layers_contract(layer):
  check_streaming_contract(layer, {}, _inputs((2, 9, 4)))


def test_dropout_statistics_and_inference_identity():
  dropout = layers.Dropout('dropout', 0.25)
  x = jnp.ones((4, 100, 50))
  y = dropout.apply({}, x, train=True, rng=jax.random.key(0))
  kept = np.asarray(y) != 0
  assert abs(kept.mean() - 0.75) < 0.01
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.02
  np.testing.assert_array_equal(dropout.apply({}, x), x)
  np.testing.assert_array_equal(dropout.step({}, (), x[:, :1])[1], x[:, :1])
  with pytest.raises(ValueError, match='dropout: training needs an rng'):
    dropout.apply({}, x, train=True)


def test_sequential_contract_state_and_lookback():
  net = layers.Sequential('net', (
      layers.Conv2D('c1', 8, (3, 3), activation='relu'),
      layers.Conv2D('c2', 8, (5, 3), dilation=(2, 1), activation='relu'),
      layers.Conv2D('c3', 4, (1, 2)),
      layers.Flatten('flatten', 3),
      layers.Dropout('dropout', 0.5),
      layers.Dense('dense', 5, 'relu'),
      layers.Dense('out', 3),
  ))
  assert net.lookback == 2 + 8 + 0 + 2
  params = net.init(jax.random.key(0), (10, 2))
  assert sorted(params) == ['c1', 'c2', 'c3', 'dense', 'out']
  state = net.init_state(2, (10, 2))
  assert {k: v.shape for k, v in state.items()} == {
      'c1': (2, 2, 10, 2), 'c2': (2, 8, 8, 8), 'flatten': (2, 2, 5, 4)}
  check_streaming_contract(net, params, _inputs((2, 20, 10, 2)))


def test_sequential_rejects_bad_stacks():
  with pytest.raises(ValueError, match='names must be unique, c repeat'):
    layers.Sequential('net', (layers.Dense('c', 2), layers.Dense('c', 2)))
  # A valid kernel of 2 leaves 1 warm-up frame; a stride of 2 after it would
  # pair other frames when streaming than in the full window.
  with pytest.raises(ValueError, match='the layers before c2 leave 1 warm-up '
                     'frames, not a multiple of its block of 2'):
    layers.Sequential('net', (layers.Conv2D('c1', 2, (2, 1)),
                              layers.Conv2D('c2', 2, (2, 1), strides=(2, 1))))
  layers.Sequential('net', (
      layers.Conv2D('c1', 2, (2, 1), time_padding='causal'),
      layers.Conv2D('c2', 2, (2, 1), strides=(2, 1))))


def test_step_with_wrong_frame_names_layer_and_shapes():
  conv = layers.Conv2D('conv2d_3', 4, (3, 3))
  params = conv.init(jax.random.key(0), (10, 2))
  state = conv.init_state(2, (10, 2))
  with pytest.raises(ValueError) as error:
    conv.step(params, state, jnp.zeros((2, 1, 9, 2)))
  assert str(error.value) == (
      'conv2d_3: frame has shape (2, 1, 9, 2), expected (2, 1, 10, 2).')
  with pytest.raises(ValueError, match='conv2d_3: frame has dtype int32'):
    conv.step(params, state, jnp.zeros((2, 1, 10, 2), jnp.int32))
  dense = layers.Dense('dense_0', 3)
  dense_params = dense.init(jax.random.key(0), (5,))
  with pytest.raises(ValueError, match=r'dense_0: input has shape \(2, 1, 4\), '
                     r'expected \[batch, time, 5\]'):
    dense.step(dense_params, (), jnp.zeros((2, 1, 4)))


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(kernel_size=(3, 3), time_padding='same'),
     "time_padding is 'same', expected one of 'valid', 'causal', "
     "'semicausal'"),
    (dict(kernel_size=(3,)), 'kernel_size is (3,)'),
    (dict(kernel_size=(3, 3), activation='relu7'),
     "conv: unknown activation 'relu7'"),
    (dict(kernel_size=(3, 3), time_padding='same'), "time_padding is 'same'"),
])
def test_conv2d_bad_config(kwargs, fragment):
  with pytest.raises(ValueError) as error:
    layers.Conv2D('conv', 4, **kwargs)
  assert fragment in str(error.value)


def test_conv2d_kernel_larger_than_input_names_sizes():
  conv = layers.Conv2D('conv2d_5', 4, (5, 3), dilation=(2, 2))
  with pytest.raises(ValueError) as error:
    conv.output_shape((4, 1))
  assert str(error.value).startswith(
      'conv2d_5: kernel 3 with dilation 2 spans 5 features, but only 4 remain')
  with pytest.raises(ValueError) as error:
    conv.output_length(7)
  assert str(error.value).startswith(
      'conv2d_5: kernel 5 with dilation 2 spans 9 frames in time, but only 7 '
      'remain')


POOL_CASES = {
    'max_2x2': dict(pool_size=(2, 2)),
    'average_3x1_stride1': dict(pool_size=(3, 1), strides=(1, 1),
                                kind='average'),
    'max_3x2_stride2_causal': dict(pool_size=(3, 2), strides=(2, 2),
                                   time_padding='causal'),
    'average_2x3_stride3_semicausal': dict(pool_size=(2, 3), strides=(3, 1),
                                           kind='average',
                                           time_padding='semicausal'),
    'global_average_12': dict(pool_size=(12, 10), strides=(1, 1),
                              kind='average'),
}


@pytest.mark.parametrize('case', list(POOL_CASES))
def test_pool2d_contract(case):
  pool = layers.Pool2D('pool', **POOL_CASES[case])
  time = 24 - 24 % pool.block_size
  report = check_streaming_contract(pool, {}, _inputs((2, time, 10, 3)))
  assert report.stream_shape[1] == time // pool.block_size


@pytest.mark.parametrize('case', [c for c in POOL_CASES if 'causal' not in c])
def test_pool2d_matches_keras(case):
  tf = pytest.importorskip('tensorflow')
  config = POOL_CASES[case]
  pool = layers.Pool2D('pool', **config)
  keras_class = (tf.keras.layers.MaxPooling2D if pool.kind == 'max' else
                 tf.keras.layers.AveragePooling2D)
  keras_pool = keras_class(config['pool_size'], config.get('strides'),
                           padding='valid')
  x = _inputs((2, 24, 10, 3))
  np.testing.assert_allclose(pool.apply({}, x), keras_pool(np.asarray(x)),
                             atol=1e-6)


def test_pool2d_on_vectors_and_bad_sizes():
  pool = layers.Pool2D('pool', (2, 2))
  assert pool.apply({}, _inputs((2, 8, 6))).shape == (2, 4, 3)
  with pytest.raises(ValueError, match='pool of 4 features, but frames have 3'):
    layers.Pool2D('pool', (1, 4)).output_shape((3, 2))
  with pytest.raises(ValueError, match="kind is 'sum', expected one of"):
    layers.Pool2D('pool', (2, 2), kind='sum')


def _batch_norm_params(channels, seed=5):
  keys = jax.random.split(jax.random.key(seed), 4)
  return {'gamma': 1 + 0.1 * jax.random.normal(keys[0], (channels,)),
          'beta': 0.1 * jax.random.normal(keys[1], (channels,)),
          'moving_mean': 0.2 * jax.random.normal(keys[2], (channels,)),
          'moving_variance': jnp.exp(0.3 * jax.random.normal(keys[3],
                                                             (channels,)))}


@pytest.mark.parametrize('shape', [(3, 12, 4), (3, 10, 6, 4)])
def test_batch_norm_contract(shape):
  norm = layers.BatchNorm('bn')
  check_streaming_contract(norm, _batch_norm_params(4), _inputs(shape))


def test_batch_norm_matches_keras_in_both_modes():
  tf = pytest.importorskip('tensorflow')
  params = _batch_norm_params(4)
  x = _inputs((3, 10, 6, 4)) * 2 + 0.5
  keras_norm = tf.keras.layers.BatchNormalization(momentum=0.99,
                                                  epsilon=1e-3)
  keras_norm.build(x.shape)
  keras_norm.set_weights([np.asarray(params[k]) for k in (
      'gamma', 'beta', 'moving_mean', 'moving_variance')])
  norm = layers.BatchNorm('bn')
  np.testing.assert_allclose(norm.apply(params, x),
                             keras_norm(np.asarray(x), training=False),
                             atol=1e-5)
  y, updates = norm.apply_train(params, x)
  expected = keras_norm(np.asarray(x), training=True)  # updates its moments
  np.testing.assert_allclose(y, expected, atol=1e-4)
  np.testing.assert_allclose(updates['moving_mean'],
                             keras_norm.moving_mean.numpy(), atol=1e-6)
  np.testing.assert_allclose(updates['moving_variance'],
                             keras_norm.moving_variance.numpy(), atol=1e-5)


def test_non_trainable_params_are_masked_and_merged():
  from kws_jax.layers import base  # pylint: disable=g-import-not-at-top
  net = layers.Sequential('net', (layers.Dense('d', 3),
                                  layers.BatchNorm('bn')))
  params = net.init(jax.random.key(0), (5,))
  mask = base.trainable_mask(params)
  assert mask == {'d': {'kernel': True, 'bias': True},
                  'bn': {'gamma': True, 'beta': True, 'moving_mean': False,
                         'moving_variance': False}}
  _, updates = net.apply_train(params, _inputs((4, 6, 5)))
  assert set(updates) == {'bn'}
  merged = base.merge_updates(params, updates)
  assert merged['d'] is params['d']
  assert not np.allclose(merged['bn']['moving_mean'], 0.0)
  with pytest.raises(ValueError, match="update of 'conv'"):
    base.merge_updates(params, {'conv': {}})


DEPTHWISE_CASES = {
    'k3x3': dict(kernel_size=(3, 3)),
    'k5x3_dilated_multiplier2': dict(kernel_size=(5, 3), dilation=(2, 2),
                                     depth_multiplier=2),
    'k3x2_strided_semicausal': dict(kernel_size=(3, 2), strides=(2, 2),
                                    time_padding='semicausal',
                                    feature_padding='same'),
}


@pytest.mark.parametrize('kernel_size, dilation', [
    ((3, 3), (1, 1)), ((10, 3), (1, 1)), ((5, 3), (2, 2)), ((1, 1), (1, 1))])
def test_depthwise_taps_gradient_equals_autodiff(kernel_size, dilation):
  """The unit-stride VJP of the taps equals autodiff of the sum of taps."""
  from kws_jax.layers import conv  # pylint: disable=g-import-not-at-top
  x = _inputs((3, 24, 9, 4))
  kernel = _inputs((*kernel_size, 4), seed=1)

  def loss(fn, x, kernel):
    return jnp.sum(jnp.sin(fn(x, kernel, dilation)))

  ours = jax.grad(functools.partial(loss, conv._depthwise_unit_stride),
                  argnums=(0, 1))(x, kernel)
  autodiff = jax.grad(functools.partial(
      loss, lambda x, k, d: conv._sum_of_taps(x, k, d, (1, 1))),
                      argnums=(0, 1))(x, kernel)
  for o, a in zip(ours, autodiff):
    assert o.shape == a.shape
    np.testing.assert_allclose(o, a, atol=2e-5 * float(jnp.max(jnp.abs(a))))


@pytest.mark.parametrize('case', list(DEPTHWISE_CASES))
def test_depthwise_contract_and_implementations_agree(case):
  taps = layers.DepthwiseConv2D('dw', **DEPTHWISE_CASES[case])
  xla = layers.DepthwiseConv2D('dw', implementation='xla',
                               **DEPTHWISE_CASES[case])
  params = taps.init(jax.random.key(0), (10, 3))
  params['bias'] = _inputs(params['bias'].shape, seed=4)
  x = _inputs((2, 24, 10, 3))
  check_streaming_contract(taps, params, x)
  np.testing.assert_allclose(taps.apply(params, x), xla.apply(params, x),
                             atol=1e-5)


def test_depthwise_matches_keras():
  tf = pytest.importorskip('tensorflow')
  layer = layers.DepthwiseConv2D('dw', (3, 2), dilation=(2, 1),
                                 depth_multiplier=2)
  params = layer.init(jax.random.key(0), (8, 3))
  params['bias'] = _inputs((6,), seed=2)
  keras_layer = tf.keras.layers.DepthwiseConv2D((3, 2), dilation_rate=(2, 1),
                                                depth_multiplier=2)
  keras_layer.build((2, 12, 8, 3))
  keras_layer.set_weights([np.asarray(params['depthwise_kernel']),
                           np.asarray(params['bias'])])
  x = _inputs((2, 12, 8, 3))
  np.testing.assert_allclose(layer.apply(params, x),
                             keras_layer(np.asarray(x)).numpy(), atol=1e-5)


def _residual(case):
  conv = functools.partial(layers.Conv2D, feature_padding='same')
  if case == 'identity':
    return layers.Residual('res', layers.Sequential('body', (
        conv('c1', 3, (3, 3), activation='relu'),
        layers.BatchNorm('bn'))), activation='relu')
  if case == 'projection':
    return layers.Residual('res', conv('c1', 5, (5, 3), dilation=(2, 1)),
                           conv('c2', 5, (1, 1)))
  return layers.Residual(  # strided: both branches at blocks of 2
      'res', conv('c1', 4, (3, 3), strides=(2, 1), time_padding='semicausal'),
      conv('c2', 4, (1, 1), strides=(2, 1), time_padding='semicausal'))


@pytest.mark.parametrize('case, lookback', [('identity', 2),
                                            ('projection', 8),
                                            ('strided', 0)])
def test_residual_contract(case, lookback):
  residual = _residual(case)
  assert residual.lookback == lookback
  params = residual.init(jax.random.key(0), (6, 3))
  params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)
  report = check_streaming_contract(residual, params,
                                    _inputs((2, 24, 6, 3)))
  assert report.stream_shape[1] == 24 // residual.block_size


def test_residual_refuses_branches_that_do_not_add_up():
  with pytest.raises(ValueError, match='c1 has block_size 2 but c2 has 1; '
                     'branches must read and emit frames at one rate'):
    layers.Residual('res', layers.Conv2D('c1', 3, (3, 3), strides=(2, 1)),
                    layers.Conv2D('c2', 3, (1, 1)))
  residual = layers.Residual('res', layers.Conv2D('c1', 4, (3, 3)))
  with pytest.raises(ValueError, match=r'res: the branches emit frames of '
                     r'shapes c1 \(4, 4\), identity \(6, 3\)'):
    residual.output_shape((6, 3))


@pytest.mark.parametrize('mode', ['concat', 'add'])
def test_parallel_contract(mode):
  conv = functools.partial(layers.Conv2D, feature_padding='same')
  parallel = layers.Parallel('par', (
      conv('c1', 4, (5, 3), dilation=(2, 1)),  # lookback 8
      conv('c2', 4, (3, 1), time_padding='causal'),  # lookback 0
      layers.Sequential('deep', (conv('c3', 4, (3, 3)),
                                 layers.BatchNorm('bn')))), mode=mode)
  assert parallel.lookback == 8
  assert parallel.output_shape((6, 3)) == ((6, 12) if mode == 'concat'
                                           else (6, 4))
  params = parallel.init(jax.random.key(0), (6, 3))
  params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)
  check_streaming_contract(parallel, params, _inputs((2, 20, 6, 3)))


def test_parallel_refuses_branches_that_do_not_fit():
  with pytest.raises(ValueError, match='par: has 1 branch'):
    layers.Parallel('par', (layers.Conv2D('c1', 3, (3, 3)),))
  with pytest.raises(ValueError, match="par: mode is 'stack'"):
    layers.Parallel('par', (layers.Conv2D('c1', 3, (3, 3)),
                            layers.Conv2D('c2', 3, (3, 3))), mode='stack')
  parallel = layers.Parallel('par', (layers.Conv2D('c1', 3, (3, 3)),
                                     layers.Conv2D('c2', 3, (3, 1))))
  with pytest.raises(ValueError, match='differ only in the last axis'):
    parallel.output_shape((6, 3))


def test_a_stack_refuses_zero_padding_after_warm_up_frames():
  valid = layers.Conv2D('valid', 2, (3, 1))
  causal = layers.Conv2D('causal', 2, (3, 1), time_padding='causal')
  with pytest.raises(ValueError, match='causal pads its past with zeros .* '
                     'the layers before it emit 2 warm-up frames'):
    layers.Sequential('net', (valid, causal))
  with pytest.raises(ValueError, match='pads its past with zeros'):
    layers.Sequential('net', (valid, layers.Residual(
        'block', layers.Sequential('body', (causal,)))))
  # Causal first, then valid: both forms agree.
  stack = layers.Sequential('net', (causal, valid))
  assert stack.lookback == 2 and stack.pads_past


@pytest.mark.parametrize('implementation', ['im2col', 'xla'])
def test_grouped_conv2d_matches_keras_and_streams(implementation):
  tf = pytest.importorskip('tensorflow')
  conv = layers.Conv2D('conv', 6, (3, 1), dilation=(2, 1), groups=3,
                       time_padding='causal', implementation=implementation)
  params = conv.init(jax.random.key(2), (5, 6))
  assert params['kernel'].shape == (3, 1, 2, 6)
  assert conv.step_macs((5, 6)) == 5 * 6 * 3 * 2
  params['bias'] = jax.random.normal(jax.random.key(3), (6,))
  x = _inputs((2, 12, 5, 6))
  keras_conv = tf.keras.layers.Conv2D(6, (3, 1), dilation_rate=(2, 1),
                                      groups=3, padding='valid')
  padded = conv.window.full_window(x)
  keras_conv.build(padded.shape)
  keras_conv.set_weights([np.asarray(params['kernel']),
                          np.asarray(params['bias'])])
  np.testing.assert_allclose(conv.apply(params, x),
                             keras_conv(np.asarray(padded)).numpy(),
                             atol=1e-5)
  check_streaming_contract(conv, params, x, check_grads=False)


def test_grouped_conv2d_refuses_channels_that_do_not_split():
  with pytest.raises(ValueError, match='conv: filters is 5, expected a '
                     'multiple of groups'):
    layers.Conv2D('conv', 5, (3, 1), groups=2)
  with pytest.raises(ValueError, match='conv: input has 5 channels, expected '
                     'a multiple of groups'):
    layers.Conv2D('conv', 4, (3, 1), groups=2).output_shape((6, 5))
