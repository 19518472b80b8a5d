"""Checks every model of the zoo runs: Keras equivalence and a tiny export."""

import os

import jax.numpy as jnp
import numpy as np

from kws_jax.layers import scan_steps
from kws_jax.models import params_from_keras
from kws_jax.train import train_and_evaluate
from test_train import tiny_config


def assert_logits_match_keras(model, keras_model, seed: int = 0,
                              frames: int = 49, features: int = 20,
                              inputs: np.ndarray | None = None):
  """Moves Keras' biases and statistics off their init, loads its weights
  with ``params_from_keras`` and compares the logits on ``inputs`` (3
  random clips of ``[frames, features]`` by default), which must differ
  between clips; returns the params."""
  rng = np.random.default_rng(seed)
  for weight in keras_model.weights:
    if 'moving_variance' in weight.path or 'gamma' in weight.path:
      # Scales near 1, so the signal reaches the logits through deep stacks.
      weight.assign(rng.uniform(0.5, 1.5, weight.shape))
    elif len(weight.shape) == 1 or 'bias' in weight.path:
      weight.assign(rng.normal(0.0, 0.1, weight.shape))
  params = params_from_keras(model, [w.numpy() for w in keras_model.weights])
  if inputs is None:
    inputs = rng.standard_normal((3, frames, features)).astype(np.float32)
  expected = keras_model(inputs, training=False).numpy()
  # Logits that barely depend on the input would match anything.
  spread = float(np.max(np.abs(expected - expected[:1])))
  assert spread > 1e-3, f'logits differ by only {spread:.2g} across clips'
  # 1e-4 of the logits' scale (deep BatchNorm stacks reach 1e5 and more,
  # where float32 keeps about 7 digits).
  scale = max(1.0, float(np.max(np.abs(expected))))
  np.testing.assert_allclose(model.logits(params, jnp.asarray(inputs)),
                             expected, atol=1e-4 * scale)
  return params


def train_and_export_tiny(data_dir: str, workdir: str, model_config,
                          frontend_padding: str = 'valid',
                          micro: bool = False) -> dict:
  """Trains ``model_config`` for 6 steps on the tiny data and exports it.

  Asserts what every model's export must give: float streaming TFLite
  (external and internal state) equal to the JAX step, builtin ops only,
  and the float TFLite accuracies equal to JAX's; with ``micro``, also the
  full-integer model for TFLM (``assert_micro_export``). Returns the
  manifest.
  """
  from kws_jax.export import export_run  # pylint: disable=g-import-not-at-top
  config = tiny_config(data_dir)
  config.model = model_config
  config.frontend.padding = frontend_padding  # 'semicausal' for causal models
  assert train_and_evaluate(config, workdir, progress=False)['steps'] == 6
  # The float forms and int8 non-streaming (test_export covers the rest).
  manifest = export_run(workdir, progress=False, workers=0, folders=(
      'tflite_non_stream', 'tflite_stream_state_external',
      'tflite_stream_state_internal', 'quantize_int8_tflite_non_stream'),
      micro=micro)
  assert manifest['streaming_parity_max_abs_logit_diff'] <= 1e-4
  tflite = manifest['tflite']
  assert not any(op.startswith('Flex') or op == 'CUSTOM'
                 for result in tflite.values() for op in result['ops'])
  jax_accuracy = manifest['accuracy_test_split']['jax']
  assert abs(tflite['tflite_non_stream']['accuracy']['non_stream'] -
             jax_accuracy['non_stream']) < 1e-6
  for form in ('tflite_stream_state_external', 'tflite_stream_state_internal'):
    # Ten clips: a near tie of an untrained model may flip one.
    assert abs(tflite[form]['accuracy']['reset1'] -
               jax_accuracy['stream_reset1']) <= 10, form
  _assert_internal_state_equals_the_jax_step(workdir)
  if micro:
    assert_micro_export(workdir, manifest)
  return manifest


def assert_micro_export(workdir: str, manifest: dict) -> None:
  """The full-integer model: integer tensors only, TFLM's states equal to
  LiteRT's reference kernels' bit for bit over a test clip, its logits
  within one unit."""
  from kws_jax.export import tflite  # pylint: disable=g-import-not-at-top
  micro = manifest['micro']
  with open(os.path.join(workdir, micro['file']), 'rb') as file:
    flatbuffer = file.read()
  assert len(flatbuffer) == micro['flash_bytes']
  kinds = set(tflite.tensor_types(flatbuffer).values())
  assert kinds <= {'INT8', 'INT32'}, kinds
  assert not {'QUANTIZE', 'DEQUANTIZE'} & set(micro['ops'])
  assert all(entry['dtype'] == 'int8' for entry in
             [*micro['inputs'].values(), *micro['outputs'].values()])
  runtimes = micro['tflm_vs_litert']
  assert runtimes['steps'] >= 40
  reference = runtimes['litert_reference']
  assert reference['steps_with_different_states'] == 0
  # FULLY_CONNECTED may requantize a near-tie one unit apart.
  assert reference['max_logit_diff_int8_units'] <= 1
  assert 1000 < micro['arena_bytes'] < 10 * micro['flash_bytes'] + 2**20


def _assert_internal_state_equals_the_jax_step(workdir: str) -> None:
  """The internal-state TFLite stream of one clip equals the JAX step."""
  from kws_jax.export.runtime import TfliteStreaming  # pylint: disable=g-import-not-at-top
  from kws_jax.train import load_run  # pylint: disable=g-import-not-at-top
  _, model, params = load_run(workdir)
  internal = TfliteStreaming(os.path.join(
      workdir, 'tflite_stream_state_internal', 'stream_state_internal.tflite'))
  assert internal.internal
  inputs = np.random.default_rng(0).normal(
      0, 0.1, (1, model.clip_length, *model.input_shape)).astype(np.float32)
  _, expected = scan_steps(model, params, jnp.asarray(inputs))
  blocks = inputs.reshape(-1, model.block_size, *model.input_shape)
  got = np.stack([internal(block[None]) for block in blocks])
  np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-4)
