"""ds_tc_resnet (MatchboxNet): Keras count and logits, streaming, export."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import ds_tc_resnet as ds_tc_resnet_config
from kws_jax import layers
from kws_jax.layers import count_params
from kws_jax.layers.base import trainable_mask
from kws_jax.models import build_model
from kws_jax.testing import check_streaming_contract
from test_train import tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_logits_match_keras, train_and_export_tiny

# kws_streaming's README MatchboxNet (12 labels, 40 MFCCs), as Keras counts
# it (BatchNorm statistics included); the README says "75K".
README_PARAMS = 73_220

# Stride 1: a residual block of two sub-blocks, and 'same' on a 1-frame
# kernel (no padding either way, so it equals causal).
SMALL = dict(ds_filters='8,6,6', ds_repeat='1,2,1',
             ds_filter_separable='1,1,1', ds_residual='0,1,0',
             ds_padding="'causal','causal','same'", ds_kernel_size='3,5,1',
             ds_stride='1,1,1', ds_dilation='1,2,1', ds_pool='1,1,1')
# Time strides 2, 2 (max pool) and 2 ('same' with a 3-frame kernel at
# stride 2 = semicausal): steps of 8 frames; then a non-separable 'valid'
# conv (warm-up frames).
STRIDED = dict(ds_filters='8,6,6,8', ds_repeat='1,2,1,1',
               ds_filter_separable='1,1,1,0', ds_residual='0,1,0,0',
               ds_padding="'causal','causal','same','valid'",
               ds_kernel_size='3,5,3,3', ds_stride='2,1,2,1',
               ds_dilation='1,2,1,1', ds_pool='1,2,1,1', ds_max_pool=1)


def make_config(clip_duration_ms=1000.0, **model_overrides):
  config = ds_tc_resnet_config.get_config()
  config.data.clip_duration_ms = clip_duration_ms
  config.model.update(model_overrides)
  return config


def keras_ds_tc_resnet(tf, frames=100, features=40, labels=12):
  """kws_streaming's ds_tc_resnet with the README's flags and causal padding.

  Non-streaming, in Keras 3: [batch, time, 1, feature] frames; causal padding
  is zeros on the past, then a 'valid' convolution. A residual block is one
  layer listing its weights body first, then shortcut.
  """
  keras = tf.keras

  class Residual(keras.layers.Layer):
    """``body(x) + shortcut(x)``, each a list of layers."""

    def __init__(self, body, shortcut, **kwargs):
      super().__init__(**kwargs)
      self.body, self.shortcut = body, shortcut

    def build(self, input_shape):
      for branch in (self.body, self.shortcut):
        shape = input_shape
        for layer in branch:
          layer.build(shape)
          shape = layer.compute_output_shape(shape)

    def call(self, x, training=False):
      y, z = x, x
      for layer in self.body:
        y = layer(y, training=training)
      for layer in self.shortcut:
        z = layer(z, training=training)
      return y + z

    def compute_output_shape(self, input_shape):
      return (*input_shape[:-1], self.body[-2].filters)

  net = [keras.layers.Input((frames, features)),
         keras.layers.Reshape((frames, 1, features))]
  for filters, kernel, dilation, residual in zip(
      (128, 64, 64, 64, 128, 128), (11, 13, 15, 17, 29, 1),
      (1, 1, 1, 1, 2, 1), (0, 1, 1, 1, 0, 0)):
    span = dilation * (kernel - 1) + 1
    body = [keras.layers.ZeroPadding2D(((span - 1, 0), (0, 0))),
            keras.layers.DepthwiseConv2D((kernel, 1),
                                         dilation_rate=(dilation, 1),
                                         use_bias=False),
            keras.layers.Conv2D(filters, 1, use_bias=False),
            keras.layers.BatchNormalization()]
    if residual:
      net.append(Residual(body, [keras.layers.Conv2D(filters, 1,
                                                     use_bias=False),
                                 keras.layers.BatchNormalization()]))
    else:
      net += body
    net.append(keras.layers.Activation('relu'))
  net += [keras.layers.GlobalAveragePooling2D(), keras.layers.Flatten(),
          keras.layers.Dense(labels)]
  return keras.Sequential(net)


def set_kernels(keras_model, seed=0, pointwise_gain=12.0):
  """Draws every kernel with a fixed seed, N(0, gain^2 / fan_in).

  assert_logits_match_keras draws BatchNorm's gamma from N(0, 0.1), which
  shrinks the signal about 10x per block: with Keras' initial kernels every
  clip would give the Dense bias as logits. A gain of 12 on the 1x1
  convolutions keeps the logits of different clips apart.
  """
  rng = np.random.default_rng(seed)
  for weight in keras_model.weights:
    if 'kernel' not in weight.path:
      continue
    depthwise = 'depthwise' in weight.path
    fan_in = weight.shape[0] if depthwise else weight.shape[-2]
    gain = 1.0 if depthwise or 'dense' in weight.path else pointwise_gain
    weight.assign(rng.normal(0.0, gain / np.sqrt(fan_in), weight.shape))


def test_readme_matchboxnet_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  model = build_model(make_config(preprocess='mfcc'))
  # The config's semicausal frames: 100 per second.
  assert (model.clip_length, model.input_shape) == (100, (40,))
  keras_model = keras_ds_tc_resnet(tf)
  assert keras_model.count_params() == README_PARAMS
  set_kernels(keras_model)
  params = assert_logits_match_keras(model, keras_model, frames=100,
                                     features=40)
  assert count_params(params) == README_PARAMS
  masked = jax.tree.leaves(trainable_mask(params))
  assert masked.count(False) == 18  # moving mean and variance of 9 norms
  # The logits that matched within 1e-4 tell clips apart by far more.
  clips = np.random.default_rng(1).standard_normal((3, 100, 40))
  logits = model.logits(params, jnp.asarray(clips, jnp.float32))
  assert float(jnp.std(logits, axis=0).mean()) > 0.01


def perturbed_params(model):
  """Init params with biases and statistics moved off their init."""
  params = model.init(jax.random.key(0))
  params = jax.tree.map(
      lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape),
      params)
  return jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.abs(p) + 0.5
      if path[-1].key == 'moving_variance' else p, params)


@pytest.mark.parametrize('preprocess, flags, full_shape', [
    ('mfcc', STRIDED, (2, 5, 12)),
    ('raw', SMALL, (2, 5, 12)),
])
def test_ds_tc_resnet_streams_what_it_computes_on_clips(preprocess, flags,
                                                        full_shape):
  # Half-second clips (50 frames) keep the streams short.
  model = build_model(make_config(500.0, preprocess=preprocess, **flags))
  if flags is STRIDED:
    # 50 -> 25 (stride 2) -> 12 (pool 2) -> 6 (stride 2) -> 4 (valid 3).
    assert (model.block_size, model.lookback) == (8, 5)
  block = model.block_size
  shape = (2, block * (model.clip_length // block + 4), *model.input_shape)
  x = jax.random.normal(jax.random.key(2), shape) * (
      0.1 if preprocess == 'raw' else 1.0)
  # Gradients of the two forms (float64, slow to compile) are left to the
  # layers' own tests.
  report = check_streaming_contract(model, perturbed_params(model), x,
                                    atol=2e-4, check_grads=False)
  assert report.full_shape == full_shape


def test_ds_tc_resnet_layers_follow_kws_streaming():
  # Blocks: residual of two sub-blocks, non-separable, no depthwise conv.
  config = make_config(preprocess='mfcc', dropout=0.1, ds_repeat='2,1,1',
                       ds_filters='8,6,4', ds_filter_separable='1,0,1',
                       ds_residual='1,0,0',
                       ds_padding="'causal','causal','causal'",
                       ds_kernel_size='3,5,0', ds_stride='1,1,1',
                       ds_dilation='1,1,1', ds_pool='2,1,1')
  net = build_model(config).net
  assert [layer.name for layer in net.layers] == [
      'expand_dims', 'residual_1', 'dropout_1', 'average_pool_1', 'conv_2_1',
      'batch_norm_2_1', 'activation_2', 'dropout_2', 'pointwise_3_1',
      'batch_norm_3_1', 'activation_3', 'dropout_3', 'average_pool',
      'flatten', 'logits']
  residual = net.layers[1]
  assert residual.activation == 'relu'
  assert [layer.name for layer in residual.body.layers] == [
      'depthwise_1_1', 'pointwise_1_1', 'batch_norm_1_1', 'activation_1_1',
      'dropout_1_1', 'depthwise_1_2', 'pointwise_1_2', 'batch_norm_1_2']
  assert [layer.name for layer in residual.shortcut.layers] == [
      'shortcut_conv_1', 'shortcut_batch_norm_1']
  # 100 frames, pooled by 2: the final average covers 50.
  assert net.layers[-3].pool_size == (50, 1)


@pytest.mark.parametrize('kernel, dilation, stride', [
    (1, 1, 2), (2, 1, 2), (3, 1, 2), (3, 2, 3)])
def test_same_padding_is_kept_where_a_streaming_padding_equals_it(
    kernel, dilation, stride):
  # 0.6 s: 60 frames, a multiple of the strides.
  model = build_model(make_config(
      600.0, preprocess='mfcc', ds_filters='4', ds_repeat='1',
      ds_filter_separable='1', ds_residual='0', ds_padding="'same'",
      ds_kernel_size=str(kernel), ds_stride=str(stride),
      ds_dilation=str(dilation), ds_pool='1'))
  conv = model.net.layers[1]
  assert conv.time_padding == ('causal' if kernel == 1 else 'semicausal')
  params = conv.init(jax.random.key(0), (1, 40))
  x = jax.random.normal(jax.random.key(1), (2, 60, 1, 40))
  # kws_streaming's 'same': (span - 1) // 2 zeros before, the rest after,
  # then a 'valid' strided convolution.
  span = dilation * (kernel - 1) + 1
  before = (span - 1) // 2
  padded = jnp.pad(x, ((0, 0), (before, span - 1 - before), (0, 0), (0, 0)))
  reference = dataclasses.replace(conv, time_padding='valid').apply(
      params, padded)
  np.testing.assert_allclose(conv.apply(params, x), reference, atol=1e-6)


def test_frame_reshape_streams_and_checks_sizes():
  layer = layers.FrameReshape('to_channels', (1, 6))
  x = jax.random.normal(jax.random.key(0), (2, 5, 6))
  report = check_streaming_contract(layer, {}, x, atol=0.0)
  assert report.full_shape == (2, 5, 1, 6)
  with pytest.raises(ValueError, match=re.escape(
      'to_channels: frames of shape (4,) (4 values) cannot become frames of '
      'shape (1, 6)')):
    layer.output_shape((4,))
  with pytest.raises(ValueError, match=r"bad: shape is \[1, 6\], expected a "
                     'non-empty tuple'):
    layers.FrameReshape('bad', [1, 6])


@pytest.mark.parametrize('overrides, message', [
    (dict(ds_repeat='1,2'), 'model: these lists must have the same length, '
     'but ds_filters has 3, ds_repeat has 2'),
    (dict(ds_padding="'causal','same','causal'"),
     "model.ds_padding is \"'causal','same','causal'\": block 2 has 'same' "
     'with ds_kernel_size 5, ds_dilation 2 and ds_stride 1: it pads 4 zero '
     "frame(s) before and 4 after, so an output reads 4 frame(s) after its "
     "block, which no streaming padding computes; expected 'causal'"),
    (dict(ds_pool='1,2,1', ds_stride='2,1,2', ds_residual='0,0,0',
          ds_kernel_size='3,5,3', ds_padding="'causal','causal','same'"),
     "model.ds_padding is \"'causal','causal','same'\": block 3 has 'same' "
     'at stride 2 on 25 frames of a clip, not a multiple of the stride'),
    (dict(ds_padding="'valid','causal','causal'"),
     "model.ds_padding is \"'valid','causal','causal'\": block 2 has "
     "'causal' after the 'valid' convolution of block 1: a stream would feed "
     "it that layer's warm-up frames"),
    (dict(ds_padding="'causal','causal','full'"),
     "block 3 has 'full', expected one of 'causal', 'same', 'valid'"),
    (dict(ds_padding="'causal','valid','causal'"),
     "block 2 has 'valid' with ds_residual 1, expected 'causal' or 'same'"),
    (dict(ds_stride='1,2,1'),
     "model.ds_stride is '1,2,1': block 2 has 2 with ds_residual 1"),
    (dict(ds_filter_separable='0,1,1', ds_stride='2,1,1'),
     'block 1 has 2 with ds_filter_separable 0'),
    (dict(ds_filter_separable='0,1,1', ds_kernel_size='0,5,1'),
     "model.ds_kernel_size is '0,5,1': block 1 has 0, expected 1 or more"),
    (dict(ds_padding="'valid','causal','causal'", ds_kernel_size='60,5,1',
          ds_dilation='2,2,1'),
     "model.ds_kernel_size is '60,5,1': block 1 does not fit: depthwise_1_1: "
     'kernel 60 with dilation 2 spans 119 frames in time, but only 100 '
     'remain'),
    (dict(ds_pool='1,1,101'),
     "model.ds_pool is '1,1,101': block 3 does not fit: average_pool_3: pool "
     'of 101 frames in time, but only 100 remain'),
    (dict(ds_filters='8,0,6'), "model.ds_filters is '8,0,6': block 2 has 0, "
     'expected a positive int'),
    (dict(ds_scale=2), 'model.ds_scale is 2, expected 0 or 1'),
])
def test_ds_tc_resnet_refuses_bad_flags_when_built(overrides, message):
  flags = {**SMALL, **overrides}
  with pytest.raises(ValueError, match=re.escape(message)):
    build_model(make_config(preprocess='mfcc', **flags))


@pytest.mark.long
def test_ds_tc_resnet_exports_every_form_with_builtin_ops(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  manifest = train_and_export_tiny(
      tiny_data, str(tmp_path / 'run'),
      make_config(preprocess='raw', **SMALL).model,
      frontend_padding='semicausal')
  ops = manifest['tflite']['tflite_stream_state_external']['ops']
  assert {'DEPTHWISE_CONV_2D', 'CONV_2D', 'AVERAGE_POOL_2D'} <= set(ops)
  float_accuracy = manifest['tflite']['tflite_non_stream']['accuracy']
  int8_accuracy = manifest['tflite']['quantize_int8_tflite_non_stream'][
      'accuracy']
  # Ten test clips: int8 may flip at most one of them.
  assert abs(int8_accuracy['non_stream'] - float_accuracy['non_stream']) <= 10
