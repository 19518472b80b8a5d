"""The DS-CNN: kws_streaming's parameter count and logits, streaming and training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import ds_cnn as ds_cnn_config
from kws_jax import keras_reference
from kws_jax.layers import count_params
from kws_jax.layers.base import trainable_mask
from kws_jax.models import build_model
from kws_jax.testing import check_streaming_contract
from kws_jax.train import train_and_evaluate
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_logits_match_keras, train_and_export_tiny

SMALL = dict(cnn1_filters=6, cnn2_filters='8,8', dw2_kernel_size='(3,3),(5,3)',
             dw2_dilation_rate='(1,1),(2,1)', dw2_strides='(1,1),(1,1)',
             dw2_act="'relu','relu'", cnn2_act="'relu','relu'")


def make_config(**model_overrides):
  config = ds_cnn_config.get_config()
  config.model.update(model_overrides)
  return config


def test_paper_ds_cnn_matches_kws_streaming_in_keras():
  tf = pytest.importorskip('tensorflow')
  config = make_config(preprocess='mfcc')
  model = build_model(config)
  keras_model = keras_reference.paper_ds_cnn(tf, config.model)
  assert keras_model.count_params() == 497_412
  # Keras' initial kernels and the pooling over the whole plane leave
  # logits that hardly depend on a noise clip: 4x the kernels and clips of
  # different levels keep them apart.
  for weight in keras_model.weights:
    if 'kernel' in weight.path:
      weight.assign(4.0 * weight.numpy())
  clips = np.random.default_rng(0).standard_normal((3, 49, 20)) + np.array(
      [-1.0, 0.0, 1.0])[:, None, None]
  params = assert_logits_match_keras(model, keras_model,
                                     inputs=clips.astype(np.float32))
  assert count_params(params) == 497_412
  masked = jax.tree.leaves(trainable_mask(params))
  assert masked.count(False) == 22  # moving mean and variance of 11 norms


@pytest.mark.parametrize('preprocess', ['mfcc', 'raw'])
def test_ds_cnn_streams_what_it_computes_on_clips(preprocess):
  model = build_model(make_config(preprocess=preprocess, **SMALL))
  params = model.init(jax.random.key(0))
  params = jax.tree.map(
      lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape),
      params)  # statistics and biases off their init
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.abs(p) + 0.5
      if path[-1].key == 'moving_variance' else p, params)
  shape = (2, model.clip_length + 4 * model.block_size, *model.input_shape)
  x = jax.random.normal(jax.random.key(2), shape) * (
      0.1 if preprocess == 'raw' else 1.0)
  report = check_streaming_contract(model, params, x, atol=2e-4,
                                    check_grads=preprocess == 'mfcc')
  assert report.full_shape == (2, 5, 12)


def test_ds_cnn_refuses_what_cannot_stream():
  with pytest.raises(ValueError, match="model.dw2_padding is 'same', expected "
                     "'valid'"):
    build_model(make_config(dw2_padding='same', **SMALL))
  with pytest.raises(ValueError, match='bn_renorm is 1'):
    build_model(make_config(bn_renorm=1, **SMALL))


def test_ds_cnn_trains_and_updates_its_statistics(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  config = tiny_config(tiny_data)
  config.model = make_config(preprocess='mfcc', **SMALL).model
  workdir = str(tmp_path / 'run')
  result = train_and_evaluate(config, workdir, progress=False)
  assert result['steps'] == 6
  from kws_jax.train import load_run  # pylint: disable=g-import-not-at-top
  _, model, params = load_run(workdir, 'last')
  fresh = model.init(jax.random.key(0))
  # The running statistics moved; the optimizer did not touch them otherwise.
  assert not np.allclose(params['batch_norm_0']['moving_mean'],
                         fresh['batch_norm_0']['moving_mean'])
  assert not np.allclose(params['batch_norm_0']['moving_variance'], 1.0)


@pytest.mark.long
def test_ds_cnn_exports_every_form_with_builtin_ops(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  manifest = train_and_export_tiny(
      tiny_data, str(tmp_path / 'run'),
      make_config(preprocess='raw', **SMALL).model, micro=True)
  assert {'DEPTHWISE_CONV_2D', 'AVERAGE_POOL_2D'} <= set(
      manifest['micro']['ops'])
  ops = manifest['tflite']['tflite_stream_state_external']['ops']
  assert {'DEPTHWISE_CONV_2D', 'AVERAGE_POOL_2D'} <= set(ops)
  float_accuracy = manifest['tflite']['tflite_non_stream']['accuracy']
  int8_accuracy = manifest['tflite']['quantize_int8_tflite_non_stream'][
      'accuracy']
  # Ten test clips: int8 may flip at most one of them.
  assert abs(int8_accuracy['non_stream'] - float_accuracy['non_stream']) <= 10
