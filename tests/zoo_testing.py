"""Checks every model of the zoo runs: Keras equivalence and a tiny export."""

import jax.numpy as jnp
import numpy as np

from kws_jax.models import params_from_keras
from kws_jax.train import train_and_evaluate
from test_train import tiny_config


def assert_logits_match_keras(model, keras_model, seed: int = 0,
                              frames: int = 49, features: int = 20):
  """Moves Keras' biases and statistics off their init, loads its weights
  with ``params_from_keras`` and compares the logits; returns the params."""
  rng = np.random.default_rng(seed)
  for weight in keras_model.weights:
    if 'moving_variance' in weight.path:
      weight.assign(rng.uniform(0.5, 2.0, weight.shape))
    elif len(weight.shape) == 1 or 'bias' in weight.path:
      weight.assign(rng.normal(0.0, 0.1, weight.shape))
  params = params_from_keras(model, [w.numpy() for w in keras_model.weights])
  inputs = rng.standard_normal((3, frames, features)).astype(np.float32)
  np.testing.assert_allclose(model.logits(params, jnp.asarray(inputs)),
                             keras_model(inputs, training=False).numpy(),
                             atol=1e-4)
  return params


def train_and_export_tiny(data_dir: str, workdir: str, model_config) -> dict:
  """Trains ``model_config`` for 6 steps on the tiny data and exports it.

  Asserts what every model's export must give: float streaming TFLite equal
  to the JAX step, builtin ops only, and the float TFLite accuracy equal to
  JAX's. Returns the manifest.
  """
  from kws_jax.export import export_run  # pylint: disable=g-import-not-at-top
  config = tiny_config(data_dir)
  config.model = model_config
  assert train_and_evaluate(config, workdir, progress=False)['steps'] == 6
  manifest = export_run(workdir, progress=False, workers=1)
  assert manifest['streaming_parity_max_abs_logit_diff'] <= 1e-4
  tflite = manifest['tflite']
  assert not any(op.startswith('Flex') or op == 'CUSTOM'
                 for result in tflite.values() for op in result['ops'])
  assert abs(tflite['tflite_non_stream']['accuracy']['non_stream'] -
             manifest['accuracy_test_split']['jax']['non_stream']) < 1e-6
  return manifest
