"""A model that cannot stream trains and exports its non-streaming forms only."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from kws_jax import layers, models
from kws_jax.train import train_and_evaluate
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import


@dataclasses.dataclass(frozen=True)
class WholeClipMean(layers.Layer):
  """The mean over every frame of the input: needs the whole clip at once."""

  name: str

  @property
  def supports_step(self) -> bool:
    return False

  def output_length(self, length: int) -> int:
    return 1

  def apply(self, params, x, *, train=False, rng=None):
    del params, train, rng
    return jnp.mean(x, axis=1, keepdims=True)

  def step(self, params, state, frame):
    raise NotImplementedError('WholeClipMean cannot stream')


def whole_clip_model(config, *, frames, features, label_count):
  del config, frames, features
  return (WholeClipMean('mean'), layers.Dense('logits', label_count))


def test_export_writes_only_the_non_streaming_forms(tiny_data, tmp_path,  # pylint: disable=redefined-outer-name
                                                    monkeypatch):
  from kws_jax.export import export_run  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(models.ARCHITECTURES, 'whole_clip', whole_clip_model)
  config = tiny_config(tiny_data)
  config.model = ml_collections.ConfigDict(
      {'name': 'whole_clip', 'preprocess': 'raw', 'label_count': 0})
  model = models.build_model(config)
  assert not model.supports_step
  with pytest.raises(ValueError, match='this model cannot stream'):
    model.step(model.init(jax.random.key(0)), {}, jnp.zeros((1, 320)))
  workdir = str(tmp_path / 'run')
  train_and_evaluate(config, workdir, progress=False)
  with open(os.path.join(workdir, 'model_summary.txt'), encoding='utf-8') as f:
    assert 'Streaming: none (a layer needs the whole clip)' in f.read()
  manifest = export_run(workdir, progress=False, workers=0, int8=False)
  assert sorted(manifest['tflite']) == [
      'quantize_opt_for_size_tflite_non_stream', 'tflite_non_stream']
  assert manifest['stream'] is None
  assert manifest['streaming_parity_max_abs_logit_diff'] is None
  assert sorted(manifest['accuracy_test_split']['jax']) == ['non_stream']
  assert not os.path.exists(os.path.join(workdir, 'stream_state_external'))
