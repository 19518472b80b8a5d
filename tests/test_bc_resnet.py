"""BC-ResNet: SubSpectralNorm, broadcast residuals, Keras logits, streaming."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import bc_resnet as bc_resnet_config
from kws_jax import layers
from kws_jax.layers import count_params
from kws_jax.layers.base import trainable_mask
from kws_jax.models import build_model
from kws_jax.testing import check_streaming_contract
from test_train import tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_logits_match_keras, train_and_export_tiny

# On [50, 20] MFCCs: 20 -> 10 features after the first convolution, 10 and 5
# in the two stages (sub_groups 5 divides both).
SMALL = dict(filters='4, 6', blocks_n='1, 1', strides='(1,1),(1,2)',
             dilations='(1,1),(2,1)', dropouts='0.1, 0.1', pools='1, 1',
             first_filters=4, last_filters=8)
# One stage (a transition and a normal block, 5 features), for the tests
# that compile the model many times.
TINY = dict(filters='4', blocks_n='1', strides='(1,2)', dilations='(2,1)',
            dropouts='0.1', pools='1', first_filters=4, last_filters=8)


def make_config(**model_overrides):
  config = bc_resnet_config.get_config()
  config.model.update(model_overrides)
  return config


def small_config(flags=None, **model_overrides):
  """``flags`` (SMALL) on 40/20 ms frames of 20 MFCCs, semicausal: 50 frames."""
  config = make_config(**{**(flags or SMALL), **model_overrides})
  config.frontend.update(window_size_ms=40.0, window_stride_ms=20.0,
                         dct_num_features=20)
  return config


def off_init(layer, in_shape=None, seed: int = 1):
  """Random params for ``layer``, statistics and biases off their init.

  Drawn with NumPy (no XLA compile of an init program): kernels N(0,
  1 / fan_in), gamma about 1, beta, biases and means about 0, variances in
  [0.5, 1.5].
  """
  shapes = jax.eval_shape(lambda: layer.init(jax.random.key(0), in_shape))
  rng = np.random.default_rng(seed)

  def draw(path, spec):
    key, shape = path[-1].key, spec.shape
    if key == 'moving_variance':
      value = rng.uniform(0.5, 1.5, shape)
    elif key == 'gamma':
      value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif key in ('beta', 'bias', 'moving_mean'):
      value = 0.1 * rng.standard_normal(shape)
    else:  # kernel [kt, kf, in, out] or depthwise_kernel [kt, kf, C, m]
      fan_in = np.prod(shape[:2]) * (shape[2] if key == 'kernel' else 1)
      value = rng.standard_normal(shape) / np.sqrt(fan_in)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


# -- SubSpectralNorm ---------------------------------------------------------


def ssn_reference(x, params, sub_groups, epsilon=1e-3, momentum=0.99,
                  train=False):
  """kws_streaming's SubSpectralNormalization in NumPy: reshape, BN, reshape."""
  batch, time, features, channels = x.shape
  grouped = x.reshape(batch, time, features // sub_groups,
                      sub_groups * channels)
  if train:
    mean = grouped.mean(axis=(0, 1, 2))
    variance = grouped.var(axis=(0, 1, 2))
  else:
    mean, variance = params['moving_mean'], params['moving_variance']
  y = ((grouped - mean) / np.sqrt(variance + epsilon) * params['gamma'] +
       params['beta'])
  updates = {
      'moving_mean': momentum * params['moving_mean'] + (1 - momentum) * mean,
      'moving_variance': (momentum * params['moving_variance'] +
                          (1 - momentum) * variance)}
  return y.reshape(x.shape), updates


@pytest.mark.parametrize('sub_groups', [1, 2, 5])
def test_subspectral_norm_equals_the_reshaped_batch_norm(sub_groups):
  features, channels = 10, 3
  layer = layers.SubSpectralNorm('ssn', sub_groups)
  params = off_init(layer, (features, channels))
  assert {k: v.shape for k, v in params.items()} == {
      k: (sub_groups * channels,) for k in
      ('gamma', 'beta', 'moving_mean', 'moving_variance')}
  x = np.asarray(jax.random.normal(jax.random.key(2),
                                   (4, 7, features, channels))) * 2.0 + 0.5
  numpy_params = {k: np.asarray(v, np.float64) for k, v in params.items()}

  expected, _ = ssn_reference(x, numpy_params, sub_groups)
  np.testing.assert_allclose(layer.apply(params, jnp.asarray(x)), expected,
                             atol=1e-5)
  expected, expected_updates = ssn_reference(x, numpy_params, sub_groups,
                                             train=True)
  y, updates = layer.apply_train(params, jnp.asarray(x))
  np.testing.assert_allclose(y, expected, atol=1e-4)
  for key, value in expected_updates.items():
    np.testing.assert_allclose(updates[key], value, rtol=1e-5, atol=1e-6)
  assert not any(jax.tree.leaves(trainable_mask(
      {k: params[k] for k in ('moving_mean', 'moving_variance')})))
  if sub_groups == 5:
    check_streaming_contract(layer, params, jnp.asarray(x[:2]),
                             check_grads=False)


def test_subspectral_norm_refuses_features_it_cannot_group():
  with pytest.raises(ValueError, match=r'ssn: sub_groups is 4, expected a '
                     r'divisor of the 10 features of its input frames'):
    layers.SubSpectralNorm('ssn', 4).init(jax.random.key(0), (10, 3))
  with pytest.raises(ValueError, match='ssn: sub_groups is 0, expected a '
                     'positive int'):
    layers.SubSpectralNorm('ssn', 0)


# -- The broadcast residual --------------------------------------------------


def broadcast_block(identity, time_padding):
  """A block whose branches both warm up when ``time_padding='valid'``."""
  frequency = layers.Sequential('frequency', (
      layers.DepthwiseConv2D('dw_f', (2, 3), time_padding=time_padding,
                             feature_padding='same', use_bias=False),
      layers.SubSpectralNorm('ssn', 2)))
  temporal = layers.Sequential('temporal', (
      layers.FeatureMean('mean'),
      layers.DepthwiseConv2D('dw_t', (3, 1), dilation=(2, 1),
                             time_padding=time_padding, use_bias=False),
      layers.BatchNorm('bn'), layers.Activation('swish', 'swish'),
      layers.Conv2D('conv', 3, (1, 1), use_bias=False),
      layers.SpatialDropout('drop', 0.5)))
  return layers.BroadcastResidual('block', frequency, temporal,
                                  identity=identity)


def test_broadcast_residual_streams_what_it_computes():
  # 'valid' branches warm up (1 + 4 frames): the sum crops f and x to match.
  # The causal blocks without identity stream in the model tests below.
  lookback = 5
  block = broadcast_block(True, 'valid')
  assert block.lookback == lookback
  params = off_init(block, (6, 3))
  x = jax.random.normal(jax.random.key(3), (2, 12, 6, 3))
  report = check_streaming_contract(block, params, x, atol=1e-5)
  assert report.full_shape == (2, 12 - lookback, 6, 3)

  # The sum by hand: f + broadcast(temporal(f)) + x on their common frames.
  f = block.frequency.apply(params['frequency'], x)
  t = block.temporal.apply(params['temporal'], f)
  expected = f[:, -t.shape[1]:] + t + x[:, -t.shape[1]:]
  np.testing.assert_allclose(block.apply(params, x), jax.nn.relu(expected),
                             atol=1e-6)


def test_spatial_dropout_drops_whole_channels():
  layer = layers.SpatialDropout('drop', 0.5)
  x = jnp.ones((8, 5, 4, 6))
  y = layer.apply({}, x, train=True, rng=jax.random.key(0))
  per_channel = y.reshape(8, 20, 6)
  assert jnp.all(per_channel == per_channel[:, :1])  # one value per channel
  assert set(np.unique(np.asarray(y))) == {0.0, 2.0}
  assert jnp.array_equal(layer.apply({}, x), x)


def test_broadcast_residual_refuses_mismatched_branches():
  block = broadcast_block(True, 'causal')
  with pytest.raises(ValueError, match=r'block: temporal emits frames of shape '
                     r'\(1, 3\) from frequency\'s \(6, 4\), expected \(1, 4\)'):
    block.init(jax.random.key(0), (6, 4))
  widen = layers.Sequential('frequency', (layers.Conv2D('conv', 4, (1, 1)),))
  with pytest.raises(ValueError, match=r'block: frequency emits frames of '
                     r'shape \(6, 4\) but the input frames \(the identity\) '
                     r'have shape \(6, 3\)'):
    layers.BroadcastResidual('block', widen, layers.FeatureMean('mean')
                             ).init(jax.random.key(0), (6, 3))
  strided = layers.Sequential('temporal', (
      layers.FeatureMean('mean'),
      layers.Conv2D('conv', 3, (1, 1), strides=(2, 1))))
  with pytest.raises(ValueError, match='block: temporal has block_size 2 and '
                     'output_ratio 1/2, expected 1 and 1'):
    layers.BroadcastResidual('block', block.frequency, strided)


# -- kws_streaming's BC-ResNet in Keras --------------------------------------


def keras_bc_resnet(tf, flags, frames: int, features: int, labels: int):
  """kws_streaming's bc_resnet with paddings='causal' (non-streaming), Keras 3.

  Causal time padding and kws_streaming's 'same' frequency padding as its
  Stream wrapper applies them (zeros, then a valid convolution);
  SubSpectralNormalization as kws_streaming builds it (Reshape, BN, Reshape).
  """
  keras = tf.keras
  ops = keras.ops
  lay = keras.layers
  groups = flags.sub_groups

  def sub_spectral_norm(x):
    time, feats, channels = x.shape[1:]
    x = lay.Reshape((time, feats // groups, channels * groups))(x)
    x = lay.BatchNormalization()(x)
    return lay.Reshape((time, feats, channels))(x)

  def temporal(x, filters, dilation, dropout):
    x = ops.mean(x, axis=2, keepdims=True)
    x = lay.ZeroPadding2D(((2 * dilation[0], 0), (0, 0)))(x)
    x = lay.DepthwiseConv2D((3, 1), dilation_rate=dilation, use_bias=False)(x)
    x = lay.BatchNormalization()(x)
    x = lay.Activation('swish')(x)
    x = lay.Conv2D(filters, 1, use_bias=False)(x)
    return lay.SpatialDropout2D(dropout)(x)

  def frequency(x, dilation):
    x = lay.DepthwiseConv2D((1, 3), dilation_rate=dilation, padding='same',
                            use_bias=False)(x)
    return sub_spectral_norm(x)

  inputs = lay.Input((frames, features))
  net = lay.Reshape((frames, features, 1))(inputs)
  net = lay.ZeroPadding2D(((4, 0), (1, 2)))(net)
  net = lay.Conv2D(flags.first_filters, 5, strides=(1, 2))(net)
  for blocks, filters, dilation, stride, dropout in zip(
      (2, 2, 4, 4), (8, 12, 16, 20), ((1, 1), (2, 1), (4, 1), (8, 1)),
      ((1, 1), (1, 2), (1, 2), (1, 1)), (0.1,) * 4):
    net = lay.Conv2D(filters, 1, strides=stride, use_bias=False)(net)
    net = lay.Activation('relu')(lay.BatchNormalization()(net))
    f = frequency(net, dilation)
    net = lay.Activation('relu')(f + temporal(f, filters, dilation, dropout))
    for _ in range(blocks):
      f = frequency(net, dilation)
      net = lay.Activation('relu')(
          net + f + temporal(f, filters, dilation, dropout))
  net = lay.ZeroPadding2D(((4, 0), (2, 2)))(net)
  net = lay.DepthwiseConv2D(5)(net)
  net = ops.mean(net, axis=2, keepdims=True)
  net = lay.Conv2D(flags.last_filters, 1, use_bias=False)(net)
  net = lay.GlobalAveragePooling2D(keepdims=True)(net)
  net = lay.Conv2D(labels, 1, use_bias=False)(net)
  return keras.Model(inputs, lay.Reshape((labels,))(net))


def test_bc_resnet_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  config = make_config(preprocess='mfcc')
  model = build_model(config)
  assert model.clip_length == 100 and model.input_shape == (40,)
  keras_model = keras_bc_resnet(tf, config.model, 100, 40, 12)
  assert keras_model.count_params() == 14_024
  # Keras' initial kernels shrink the signal through the 16 blocks until
  # the logits hardly depend on the clip: twice their scale keeps it. Clips
  # of different levels: the global average pool before the logits would
  # give three noise clips all but the same logits.
  for weight in keras_model.weights:
    if 'kernel' in weight.path:
      weight.assign(2.0 * weight.numpy())
  clips = np.random.default_rng(0).standard_normal((3, 100, 40)) + np.array(
      [-1.0, 0.0, 1.0])[:, None, None]
  params = assert_logits_match_keras(model, keras_model, frames=100,
                                     features=40,
                                     inputs=clips.astype(np.float32))
  assert count_params(params) == 14_024
  masked = jax.tree.leaves(trainable_mask(params))
  # Moving mean and variance of 36 norms: batch_norm1, the SubSpectralNorm
  # and batch_norm2 of 4 transition blocks, the SubSpectralNorm and
  # batch_norm of 12 normal blocks.
  assert masked.count(False) == 2 * (4 * 3 + 12 * 2)


# -- Streaming, export and errors --------------------------------------------


@pytest.mark.parametrize('preprocess, overrides, windows', [
    # 58 frames max-pooled by 2: 29, of which one clip is 25.
    # Raw audio through the semicausal frontend: see test_ds_tc_resnet.
    ('mfcc', dict(pools='2', max_pool=1), 5)])
def test_bc_resnet_streams_what_it_computes_on_clips(preprocess, overrides,
                                                     windows):
  model = build_model(small_config(TINY, preprocess=preprocess, **overrides))
  params = off_init(model)
  block = model.block_size
  time = -(-(model.clip_length + 4 * block) // block) * block
  x = jax.random.normal(jax.random.key(2), (2, time, *model.input_shape)) * (
      0.1 if preprocess == 'raw' else 1.0)
  # Gradients of both forms are compared on the blocks above (cheaper).
  report = check_streaming_contract(model, params, x, atol=2e-4,
                                    check_grads=False)
  assert report.full_shape == (2, windows, 12)


@pytest.mark.long
def test_bc_resnet_exports_with_builtin_ops(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  manifest = train_and_export_tiny(
      tiny_data, str(tmp_path / 'run'),
      small_config(TINY, preprocess='raw').model,
      frontend_padding='semicausal')
  ops = manifest['tflite']['tflite_stream_state_external']['ops']
  assert {'DEPTHWISE_CONV_2D', 'AVERAGE_POOL_2D'} <= set(ops)
  float_accuracy = manifest['tflite']['tflite_non_stream']['accuracy']
  int8_accuracy = manifest['tflite']['quantize_int8_tflite_non_stream'][
      'accuracy']
  # Ten test clips: int8 may flip at most one of them.
  assert abs(int8_accuracy['non_stream'] - float_accuracy['non_stream']) <= 10


@pytest.mark.parametrize('overrides, message', [
    (dict(filters='4, 6, 8'), 'model: these lists must have the same length, '
     'but blocks_n has 2, filters has 3, dilations has 2'),
    (dict(sub_groups=2), r'model.sub_groups is 2, expected a divisor of the '
     r'features every SubSpectralNorm sees, but stage 1 \(model.strides\[1\] '
     r'= \(1, 2\)\) has 5: features 20 -> 10 -> 10 -> 5'),
    (dict(paddings='same'), "model.paddings is 'same', expected 'causal': "
     "'same' padding in time reads future frames"),
    (dict(max_pool=2), 'model.max_pool is 2, expected 0'),
    (dict(dropouts='0.1, 1.0'), r'model.dropouts\[1\] is 1.0, expected 0 <= '
     'rate < 1'),
])
def test_bc_resnet_refuses_bad_flags_when_built(overrides, message):
  with pytest.raises(ValueError, match=message):
    build_model(small_config(preprocess='mfcc', **overrides))
