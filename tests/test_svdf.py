"""SVDF and SVDF ResNet: Keras parity, streaming, export, flag errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import svdf as svdf_config
from experiments.configs import svdf_resnet as svdf_resnet_config
from kws_jax import layers
from kws_jax.frontend import MfccFrontend
from kws_jax.layers import count_params
from kws_jax.layers.base import trainable_mask
from kws_jax.models import Model, build_model
from kws_jax.testing import check_streaming_contract
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_logits_match_keras, train_and_export_tiny

# svdf_0 holds under 5% of the weights, so the int8 export keeps it float
# (export.pipeline.float_scopes): one int8 scale for all MFCCs loses the
# small ones.
SMALL_SVDF = dict(svdf_memory_size='3,5', svdf_units1='4,24',
                  svdf_act="'relu','relu'", svdf_units2='4,-1',
                  svdf_dropout='0.1,0.0')
SMALL_RESNET = dict(block1_memory_size='3', block2_memory_size='4,1',
                    block3_memory_size='5', block1_units1='6',
                    block2_units1='5,7', block3_units1='8',
                    blocks_pool='2,2,1', units2='6')


def make_config(module, **model_overrides):
  config = module.get_config()
  config.model.update(model_overrides)
  return config


def short_clips(config, clip_duration_ms=500.0):
  """``config`` on shorter clips: fewer frames to flatten or pool."""
  config.data.clip_duration_ms = clip_duration_ms
  return config


def random_params(layer, in_shape=None, seed=0):
  """Params of ``layer`` drawn with numpy (no per-shape jit of an eager init):
  every leaf off its init, BatchNorm variances positive."""
  template = jax.eval_shape(lambda: layer.init(jax.random.key(0), in_shape))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    value = 0.3 * rng.standard_normal(leaf.shape)
    if path[-1].key == 'moving_variance':
      value = np.abs(value) + 0.5
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, template)


# -- Keras 3 equivalents of kws_streaming's layers (non-streaming) -----------


def keras_svdf_layers(tf):
  """Keras layers with the weights, order and math of kws_streaming's Svdf."""
  keras = tf.keras

  class DepthwiseConv1D(keras.layers.Layer):
    """A filter of memory_size frames per channel: time_kernel, time_bias."""

    def __init__(self, memory_size, use_bias, pad, **kwargs):
      super().__init__(**kwargs)
      self.memory_size, self.use_bias, self.pad = memory_size, use_bias, pad

    def build(self, input_shape):
      channels = input_shape[-1]
      self.time_kernel = self.add_weight(
          shape=(self.memory_size, channels), name='time_kernel',
          initializer='glorot_uniform')
      if self.use_bias:
        self.time_bias = self.add_weight(shape=(channels,), name='time_bias',
                                         initializer='zeros')

    def call(self, x):
      if self.pad == 'causal':
        x = keras.ops.pad(x, [[0, 0], [self.memory_size - 1, 0], [0, 0]])
      y = keras.ops.depthwise_conv(x, self.time_kernel[:, :, None],
                                   padding='valid')
      return y + self.time_bias if self.use_bias else y

  class Svdf(keras.layers.Layer):
    """dense1 (no bias), time filter, BatchNorm, activation, dense2."""

    def __init__(self, units1, memory_size, units2=-1, activation='relu',
                 use_bias=True, use_batch_norm=False, bn_scale=False,
                 pad='causal', **kwargs):
      super().__init__(**kwargs)
      self.activation = keras.activations.get(activation)
      # Created in kws_streaming's order, which is the order of the weights.
      self.dense1 = keras.layers.Dense(units1, use_bias=False)
      self.depth_cnn1 = DepthwiseConv1D(memory_size, use_bias, pad)
      self.dense2 = keras.layers.Dense(units2) if units2 > 0 else None
      self.batch_norm = (keras.layers.BatchNormalization(scale=bn_scale)
                         if use_batch_norm else None)

    def call(self, x, training=False):
      y = self.depth_cnn1(self.dense1(x))
      if self.batch_norm is not None:
        y = self.batch_norm(y, training=training)
      y = self.activation(y)
      return self.dense2(y) if self.dense2 is not None else y

  class ResidualBlock(keras.layers.Layer):
    """SVDFs + (Dense without bias, BatchNorm), summed, then the activation.

    kws_streaming builds this with the functional API, whose weight list
    orders the layers by graph depth; here they are listed body first, as
    kws_jax's Residual does.
    """

    def __init__(self, svdfs, units, bn_scale, activation, **kwargs):
      super().__init__(**kwargs)
      self.svdfs = svdfs
      self.dense = keras.layers.Dense(units, use_bias=False)
      self.norm = keras.layers.BatchNormalization(scale=bn_scale)
      self.activation = keras.activations.get(activation)

    def call(self, x, training=False):
      y = x
      for layer in self.svdfs:
        y = layer(y, training=training)
      return self.activation(
          y + self.norm(self.dense(x), training=training))

  return Svdf, ResidualBlock


def keras_paper_svdf(tf, frames, features):
  """kws_streaming's svdf with the paper's flags, on MFCCs."""
  keras = tf.keras
  svdf, _ = keras_svdf_layers(tf)
  net = [keras.layers.Input((frames, features))]
  for memory_size, units2 in zip((4, 10, 10, 10, 10, 10),
                                 (128, 128, 128, 128, 128, -1)):
    net.append(svdf(256, memory_size, units2, pad='valid'))
  net += [keras.layers.Flatten(), keras.layers.Dropout(0.0),
          keras.layers.Dense(12)]
  return keras.Sequential(net)


def keras_svdf_resnet_30k(tf, frames, features):
  """kws_streaming's svdf_resnet with the 30k flags, on MFCCs."""
  keras = tf.keras
  svdf, block = keras_svdf_layers(tf)
  net = [keras.layers.Input((frames, features))]
  for k, (units, memory_sizes, pool) in enumerate(
      (((32,), (7,), 2), ((50,), (7,), 2), ((50, 128), (11, 11), 1)),
      start=1):
    activations = ['relu'] * (len(units) - 1) + ['linear']
    svdfs = [svdf(u, m, -1, act, use_bias=False, use_batch_norm=True,
                  bn_scale=True, pad='causal')
             for u, m, act in zip(units, memory_sizes, activations)]
    net += [block(svdfs, units[-1], True, 'relu', name=f'block_{k}'),
            keras.layers.MaxPool1D(pool, strides=pool, padding='valid')]
    frames //= pool
  net += [keras.layers.Reshape((frames, 1, 128)),
          keras.layers.AveragePooling2D((frames, 1)),
          keras.layers.Flatten(), keras.layers.Dropout(0.0),
          keras.layers.Dense(64, activation='relu'), keras.layers.Dense(12)]
  return keras.Sequential(net)


def keep_signal(keras_model, seed=0):
  """Time kernels of variance 1 / memory_size, so the signal passes 6 SVDFs.

  Glorot counts the units as the time kernel's fan-out: its taps then sum
  to a gain of about 0.3 and six SVDFs leave logits that barely depend on
  the input (kws_streaming's init, fine for training, useless for a test).
  """
  rng = np.random.default_rng(seed)
  for weight in keras_model.weights:
    if weight.path.endswith('time_kernel'):
      weight.assign(rng.normal(0.0, weight.shape[0]**-0.5, weight.shape))
  return keras_model


def test_paper_svdf_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  config = make_config(svdf_config, preprocess='mfcc')
  model = build_model(config)
  assert (model.clip_length, model.input_shape) == (49, (30,))
  keras_model = keep_signal(keras_paper_svdf(tf, 49, 30))
  assert keras_model.count_params() == 354_444
  params = assert_logits_match_keras(model, keras_model, features=30)
  assert count_params(params) == 354_444
  # Keras layout: time_kernel [memory_size, units1], as kws_streaming.
  assert params['svdf_1']['depth_cnn1']['depthwise_kernel'].shape == (10, 256)


def test_svdf_resnet_30k_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  config = make_config(svdf_resnet_config, preprocess='mfcc')
  config.frontend.padding = 'valid'  # kws_streaming's 49 frames
  model = build_model(config)
  assert (model.clip_length, model.input_shape) == (49, (40,))
  keras_model = keras_svdf_resnet_30k(tf, 49, 40)
  assert keras_model.count_params() == 34_508
  params = assert_logits_match_keras(model, keras_model, features=40)
  assert count_params(params) == 34_508
  masked = jax.tree.leaves(trainable_mask(params))
  assert masked.count(False) == 14  # moving mean and variance of 7 norms


def test_svdf_layer_with_norm_and_projection_maps_keras_weights():
  """dense2 before batch_norm in the weight list, as kws_streaming's Svdf."""
  tf = pytest.importorskip('tensorflow')
  svdf = layers.Svdf('svdf', 6, 3, units2=5, use_batch_norm=True,
                     bn_scale=True, time_padding='valid')
  net = layers.Sequential('net', (svdf, layers.Flatten('flatten'),
                                  layers.Dense('logits', 2)))
  model = Model(name='net', net=net, input_shape=(4,), clip_length=3,
                label_count=2, frontend=MfccFrontend())
  keras_svdf, _ = keras_svdf_layers(tf)
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input((3, 4)),
      keras_svdf(6, 3, 5, use_batch_norm=True, bn_scale=True, pad='valid'),
      tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])
  assert [(w.name, tuple(w.shape)) for w in keras_model.weights[:9]] == [
      ('kernel', (4, 6)), ('time_kernel', (3, 6)), ('time_bias', (6,)),
      ('kernel', (6, 5)), ('bias', (5,)), ('gamma', (6,)), ('beta', (6,)),
      ('moving_mean', (6,)), ('moving_variance', (6,))]
  assert_logits_match_keras(model, keras_model, frames=3, features=4)


def test_configs_build_for_raw_audio():
  for module, expected in ((svdf_config, 354_444),
                           (svdf_resnet_config, 34_508)):
    model = build_model(module.get_config())
    assert model.preprocess == 'raw'
    params = jax.eval_shape(lambda m=model: m.init(jax.random.key(0)))
    assert count_params(params) == expected
  # Blocks pooled by 2 and 2: one step of the ResNet is 4 frames of 20 ms.
  assert model.block_size == 4 * 320


# -- Streaming --------------------------------------------------------------


@pytest.mark.parametrize('kwargs, lookback, units', [
    (dict(memory_size=4, time_padding='valid'), 3, 6),
    (dict(memory_size=3, time_padding='causal', use_batch_norm=True,
          bn_scale=True, use_bias=False, units2=5, dropout=0.2), 0, 5),
    (dict(memory_size=1, time_padding='causal', activation='linear'), 0, 6),
], ids=['valid', 'causal_bn_units2', 'stateless'])
def test_svdf_layer_contract(kwargs, lookback, units):
  svdf = layers.Svdf('svdf', 6, **kwargs)
  params = random_params(svdf, (4,))
  x = jax.random.normal(jax.random.key(1), (2, 12, 4))
  report = check_streaming_contract(svdf, params, x)
  assert svdf.lookback == lookback
  assert report.full_shape == (2, 12 - lookback, units)
  memory = kwargs['memory_size'] - 1  # dense1 outputs the filter still reads
  assert jax.tree.map(jnp.shape, svdf.init_state(2, (4,))) == (
      {'depth_cnn1': (2, memory, 6)} if memory else {})


def test_svdf_layer_trains_its_norm_and_drops_without_rescaling():
  svdf = layers.Svdf('svdf', 6, 3, use_batch_norm=True, dropout=0.5,
                     activation='linear', time_padding='causal')
  params = svdf.init(jax.random.key(0), (4,))
  x = jax.random.normal(jax.random.key(1), (2, 12, 4)) + 3.0
  y, updates = svdf.apply_train(params, x, rng=jax.random.key(2))
  assert y.shape == (2, 12, 6)
  assert set(updates) == {'batch_norm'}
  assert not np.allclose(updates['batch_norm']['moving_mean'], 0.0)
  # Non-scaling dropout: the inputs dense1 sees are x or 0, never x / 0.5.
  probe = layers.Svdf('probe', 4, 1, dropout=0.5, activation='linear',
                      use_bias=False)
  probe_params = {'dense1': {'kernel': jnp.eye(4)},
                  'depth_cnn1': {'depthwise_kernel': jnp.ones((1, 4))}}
  dropped = probe.apply(probe_params, x, train=True, rng=jax.random.key(3))
  assert np.all(np.isclose(dropped, x) | (dropped == 0.0))
  assert 0 < np.mean(dropped == 0.0) < 1
  np.testing.assert_array_equal(probe.apply(probe_params, x), x)


@pytest.mark.parametrize('preprocess', ['mfcc', 'raw'])
def test_svdf_model_streams_what_it_computes(preprocess):
  # MFCCs with valid SVDFs (the paper's), raw audio with causal ones: their
  # zero padding needs a frontend without a warm-up frame ('semicausal').
  config = short_clips(make_config(svdf_config, preprocess=preprocess,
                                   svdf_pad=int(preprocess == 'raw'),
                                   **SMALL_SVDF))
  if preprocess == 'raw':
    config.frontend.padding = 'semicausal'
  model = build_model(config)
  params = random_params(model)
  shape = (2, model.clip_length + 3 * model.block_size, *model.input_shape)
  x = jax.random.normal(jax.random.key(2), shape) * (
      0.1 if preprocess == 'raw' else 1.0)
  report = check_streaming_contract(model, params, x, atol=1e-4,
                                    check_grads=False)
  assert report.full_shape == (2, 4, 12)


def test_svdf_resnet_streams_what_it_computes():
  model = build_model(short_clips(make_config(
      svdf_resnet_config, preprocess='mfcc', **SMALL_RESNET)))
  assert model.clip_length == 25  # 500 ms, semicausal frontend
  assert model.block_size == 4
  params = random_params(model)
  x = jax.random.normal(jax.random.key(2), (2, 36, 40))
  report = check_streaming_contract(model, params, x, atol=1e-4,
                                    check_grads=False)
  # 36 frames -> 18 -> 9 pooled frames, averaged over windows of 6.
  assert report.full_shape == (2, 4, 12)
  assert report.stream_shape == (2, 9, 12)


# -- Export -----------------------------------------------------------------


@pytest.mark.long
def test_svdf_exports_every_form_with_builtin_ops(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  manifest = train_and_export_tiny(
      tiny_data, str(tmp_path / 'run'),
      make_config(svdf_config, preprocess='raw', **SMALL_SVDF).model)
  tflite = manifest['tflite']
  float_accuracy = tflite['tflite_non_stream']['accuracy']['non_stream']
  int8_accuracy = tflite['quantize_int8_tflite_non_stream']['accuracy'][
      'non_stream']
  # Ten test clips: int8 may flip at most one of them.
  assert abs(int8_accuracy - float_accuracy) <= 10


# -- Errors -----------------------------------------------------------------


@pytest.mark.parametrize('overrides, message', [
    (dict(svdf_memory_size='4'),
     'these lists must have the same length, but svdf_units1 has 2, '
     'svdf_memory_size has 1'),
    (dict(svdf_memory_size='0,4'),
     'model.svdf_memory_size: entry 0 is 0, expected a memory of at least 1'),
    (dict(svdf_memory_size='30,25'),
     r'model.svdf_memory_size is 30,25: with valid padding \(svdf_pad=0\) '
     'these SVDF layers consume 53 frames, but one clip has only 49'),
    (dict(svdf_pad=2), 'model.svdf_pad is 2, expected 0'),
    (dict(svdf_dropout='0.0,1.5'),
     'model.svdf_dropout: entry 1 is 1.5, expected a dropout rate'),
    (dict(svdf_units1='', svdf_memory_size='', svdf_units2='',
          svdf_dropout='', svdf_act=''),
     'model.svdf_units1 is empty'),
])
def test_svdf_refuses_bad_flags_when_built(overrides, message):
  with pytest.raises(ValueError, match=message):
    build_model(make_config(svdf_config, **{**SMALL_SVDF, **overrides}))


@pytest.mark.parametrize('overrides, message', [
    (dict(block2_units1='5'),
     'these lists must have the same length, but block2_units1 has 1, '
     'block2_memory_size has 2'),
    (dict(block3_memory_size='-1'),
     'model.block3_memory_size: entry 0 is -1, expected a memory of at '
     'least 1'),
    (dict(blocks_pool='2,2'),
     "model.blocks_pool is '2,2', expected 3 pool sizes"),
    (dict(blocks_pool='8,8,1'),
     "model.blocks_pool is '8,8,1': residual block 2 leaves 6 frames of one "
     'clip, expected at least its pool of 8'),
    (dict(svdf_pad=0, block1_memory_size='60'),
     'model.block1_memory_size is 60: with valid padding'),
])
def test_svdf_resnet_refuses_bad_flags_when_built(overrides, message):
  with pytest.raises(ValueError, match=message):
    build_model(make_config(svdf_resnet_config, **{**SMALL_RESNET,
                                                   **overrides}))


def test_svdf_layer_refuses_bad_fields():
  with pytest.raises(ValueError, match='s: memory_size is 0, expected a '
                     'positive int'):
    layers.Svdf('s', 4, 0)
  with pytest.raises(ValueError, match="s: time_padding is 'same', expected "
                     "one of 'valid', 'causal'"):
    layers.Svdf('s', 4, 2, time_padding='same')
  with pytest.raises(ValueError, match='s: dropout is 1.0, expected'):
    layers.Svdf('s', 4, 2, dropout=1.0)
  svdf = layers.Svdf('s', 4, 5, time_padding='valid')
  with pytest.raises(ValueError, match='s/depth_cnn1: memory_size 5 with valid padding '
                     'needs at least 5 frames in time, but only 3 remain'):
    svdf.output_length(3)


def test_svdf_resnet_streams_clips_that_are_not_whole_steps(tiny_data):  # pylint: disable=redefined-outer-name
  """1 s clips in 80 ms steps: the stream reads the whole steps, as the full
  window does, so streaming accuracy equals non-streaming."""
  from kws_jax import evaluate  # pylint: disable=g-import-not-at-top
  from kws_jax.train.loop import load_dataset  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data)
  config.model = svdf_resnet_config.get_config().model
  config.model.update(preprocess='raw', **SMALL_RESNET)
  config.frontend.padding = 'semicausal'
  model = build_model(config)
  assert model.clip_length % model.block_size
  params = model.init(jax.random.key(0))
  dataset = load_dataset(config)
  streamed = evaluate.streaming_accuracy(model, params, dataset, split='testing')
  assert streamed.max_logit_diff < 1e-4
