"""Export: every form loads, matches JAX, and bad models or inputs fail clearly."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from kws_jax.export import ExportError, TfliteNonStreaming, TfliteStreaming
from kws_jax.export import export_run, forms, savedmodel, tflite
from kws_jax.export.accuracy import load_split
from kws_jax.export.pipeline import TFLITE_MODELS
from kws_jax.models import build_model
from kws_jax.train import load_run, train_and_evaluate
from kws_jax.train.loop import load_dataset
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import


@pytest.fixture(scope='module')
def exported(tiny_data, tmp_path_factory):
  """A tiny raw-audio CNN, trained for 6 steps and exported in every form."""
  workdir = str(tmp_path_factory.mktemp('export_run'))
  config = tiny_config(tiny_data)
  config.model.preprocess = 'raw'
  train_and_evaluate(config, workdir, progress=False)
  # Two worker processes measure the TFLite models (the default on a large
  # test split).
  manifest = export_run(workdir, progress=False, workers=2)
  return workdir, manifest


def _path(workdir: str, folder: str) -> str:
  return os.path.join(workdir, folder, TFLITE_MODELS[folder][0])


def test_writes_kws_streaming_layout_and_manifest(exported):
  workdir, manifest = exported
  for folder in ('non_stream', 'stream_state_internal',
                 'stream_state_external'):
    assert os.path.exists(os.path.join(workdir, folder, 'saved_model.pb'))
  for folder, (_, form, _) in TFLITE_MODELS.items():
    files = set(os.listdir(os.path.join(workdir, folder)))
    assert 'model_summary.txt' in files
    if form == 'non_stream':
      assert 'tflite_non_stream_model_accuracy.txt' in files
    else:
      assert {f'tflite_{form}_model_accuracy_reset0.txt',
              f'tflite_{form}_model_accuracy_reset1.txt'} <= files
  assert set(os.listdir(os.path.join(workdir, 'jax'))) == {
      'non_stream_model_accuracy.txt', 'stream_model_accuracy_reset0.txt',
      'stream_model_accuracy_reset1.txt'}
  with open(os.path.join(workdir, 'manifest.json')) as f:
    assert json.load(f) == json.loads(json.dumps(manifest))
  stream = manifest['stream']
  assert stream['input'] == {'name': 'audio', 'shape': [1, 320],
                             'dtype': 'float32'}
  assert [s['name'] for s in stream['states']] == [
      'frontend', 'conv2d_0', 'conv2d_1', 'flatten']
  assert stream['states'][0]['shape'] == [1, 320]
  assert manifest['labels'] == ['_silence_', '_unknown_', 'yes', 'no']
  for result in manifest['tflite'].values():
    assert not any(op.startswith('Flex') or op == 'CUSTOM'
                   for op in result['ops'])


def test_float_tflite_matches_jax_frame_by_frame(exported, tiny_data):
  workdir, manifest = exported
  config, model, params = load_run(workdir)
  inputs, _ = load_split(model, load_dataset(config), 'testing')
  assert manifest['streaming_parity_max_abs_logit_diff'] <= 1e-4
  stream = forms.JaxStream(model, params)
  external = TfliteStreaming(_path(workdir, 'tflite_stream_state_external'))
  internal = TfliteStreaming(_path(workdir, 'tflite_stream_state_internal'))
  non_stream = TfliteNonStreaming(_path(workdir, 'tflite_non_stream'))
  assert internal.internal and not external.internal
  for clip in inputs[:4]:
    _, expected = stream.run(clip[None])
    external.reset()
    internal.reset()
    blocks = clip.reshape(-1, 320)
    got_external = np.stack([external(b[None]) for b in blocks])
    got_internal = np.stack([internal(b[None]) for b in blocks])
    np.testing.assert_allclose(got_external, expected, atol=1e-4)
    np.testing.assert_allclose(got_internal, got_external, atol=1e-6)
    np.testing.assert_allclose(non_stream(clip[None]),
                               model.logits(params, clip[None])[0], atol=1e-4)


def test_quantized_models_run_and_stay_close(exported, tiny_data):
  workdir, manifest = exported
  config, model, params = load_run(workdir)
  inputs, _ = load_split(model, load_dataset(config), 'testing')
  reference = np.asarray(model.logits(params, inputs))
  for folder in ('quantize_opt_for_size_tflite_non_stream',
                 'quantize_int8_tflite_non_stream'):
    quantized = TfliteNonStreaming(_path(workdir, folder))
    logits = np.stack([quantized(x[None]) for x in inputs])
    scale = np.abs(reference).max()
    assert np.abs(logits - reference).max() < 0.25 * scale, folder
  assert manifest['tflite']['quantize_int8_tflite_non_stream']['bytes'] < (
      manifest['tflite']['tflite_non_stream']['bytes'])
  assert 'QUANTIZE' in manifest['tflite'][
      'quantize_int8_tflite_stream_state_external']['ops']


def test_feature_model_streams_one_mfcc_frame(tiny_data, tmp_path):
  config = tiny_config(tiny_data)
  config.model.conv_implementation = 'xla'
  model = build_model(config)
  params = model.init(jax.random.key(0))
  savedmodel.save('stream_state_external', model, params, str(tmp_path))
  path = str(tmp_path / 'model.tflite')
  with open(path, 'wb') as f:
    f.write(tflite.convert(str(tmp_path)))
  runner = TfliteStreaming(path)
  features = np.asarray(jax.random.normal(jax.random.key(1), (1, 30, 20)))
  got = np.stack([runner(features[:, i:i + 1]) for i in range(30)])
  _, expected = forms.JaxStream(model, params).run(features)
  np.testing.assert_allclose(got, expected, atol=1e-4)


def test_non_builtin_ops_fail_naming_them(tmp_path):

  class Module(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec((4, 4), tf.float32)])
    def serving(self, x):
      return {'out': tf.linalg.expm(x)}

  module = Module()
  tf.saved_model.save(module, str(tmp_path),
                      signatures={'serving_default': module.serving})
  with pytest.raises(ExportError) as error:
    tflite.convert(str(tmp_path))
  assert 'ops without a TFLite builtin kernel' in str(error.value)


def test_bad_inputs_and_states_are_named(exported):
  workdir, _ = exported
  runner = TfliteStreaming(_path(workdir, 'tflite_stream_state_external'))
  with pytest.raises(ValueError, match=r"'audio' has shape \(1, 160\), "
                     r'expected \(1, 320\)'):
    runner(np.zeros((1, 160), np.float32))
  runner.states['state_conv2d_0'] = np.zeros((1, 3, 20, 1), np.float32)
  with pytest.raises(ValueError, match=r"'state_conv2d_0' has shape"):
    runner(np.zeros((1, 320), np.float32))
  runner.reset()
  for dtype in (np.int16, np.int32, np.complex64, bool):
    with pytest.raises(ValueError, match=f"'audio' has dtype {np.dtype(dtype)}"
                       r', expected a float array'):
      runner(np.zeros((1, 320), dtype))
  runner(np.zeros((1, 320), np.float64))  # floats of any width are fine


def test_workdir_without_a_run_is_refused(tmp_path):
  with pytest.raises(FileNotFoundError, match='holds no training run'):
    export_run(str(tmp_path))


def test_tflite_runner_streams_like_the_jax_runner(exported, tmp_path):
  from kws_jax.detect import JaxRunner, TfliteRunner  # pylint: disable=g-import-not-at-top
  workdir, _ = exported
  tflite_runner = TfliteRunner(_path(workdir, 'tflite_stream_state_external'))
  jax_runner = JaxRunner.from_workdir(workdir)
  assert tflite_runner.labels == jax_runner.labels
  assert tflite_runner.block_samples == jax_runner.block_samples == 320
  audio = 0.1 * np.random.default_rng(0).standard_normal(
      (60, 320)).astype(np.float32)
  for block in audio:
    np.testing.assert_allclose(tflite_runner(block), jax_runner(block),
                               atol=1e-4)
  int16 = (audio[0] * 32767).astype(np.int16)
  for runner in (tflite_runner, jax_runner):
    with pytest.raises(ValueError, match=r'dtype int16, expected \(320,\) '
                       'float'):
      runner(int16)
  with pytest.raises(FileNotFoundError, match='manifest.json'):
    orphan = tmp_path / 'a' / 'model.tflite'
    orphan.parent.mkdir()
    orphan.write_bytes(b'')
    TfliteRunner(str(orphan))


def test_running_exported_models_imports_no_tensorflow():
  """LiteRT runs the models; only conversion needs TensorFlow."""
  code = ('import sys, kws_jax.export, kws_jax.export.runtime, '
          'kws_jax.export.accuracy, kws_jax.detect.runners; '
          'kws_jax.export.TfliteStreaming; '
          'sys.exit("tensorflow" in sys.modules)')
  assert subprocess.run([sys.executable, '-c', code]).returncode == 0


def test_a_model_file_that_its_manifest_does_not_describe_is_refused(
    exported, tmp_path):
  """A killed or repeated export must not pair old labels with a new model."""
  import shutil  # pylint: disable=g-import-not-at-top
  from kws_jax.detect import TfliteRunner  # pylint: disable=g-import-not-at-top
  workdir, manifest = exported
  assert all(len(entry['sha256']) == 64 for entry in manifest['tflite'].values())
  copy = tmp_path / 'export'
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns('checkpoints'))
  external = _path(str(copy), 'tflite_stream_state_external')
  TfliteRunner(external)  # as exported: fine
  shutil.copy(_path(str(copy), 'quantize_int8_tflite_stream_state_external'),
              external)  # another model's bytes under this name
  with pytest.raises(ValueError, match='does not match .*manifest.json'):
    TfliteRunner(external)
  stray = copy / 'tflite_stream_state_external' / 'other.tflite'
  shutil.copy(_path(str(copy), 'tflite_stream_state_internal'), stray)
  with pytest.raises(ValueError, match='is not among the models'):
    TfliteRunner(str(stray))


def test_a_non_streaming_model_is_refused_by_the_streaming_runner(exported):
  workdir, _ = exported
  path = _path(workdir, 'tflite_non_stream')
  with pytest.raises(ValueError, match=r'non_stream.tflite is not a streaming '
                     r'model: it has no state_\* inputs and no reset '
                     r'signature \(inputs: audio \[1, 16000\]\)'):
    TfliteStreaming(path)


def test_export_checks_its_inputs_before_converting(exported, tmp_path):
  workdir, _ = exported
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(
      'tflite_*', 'quantize_*', 'stream_*', 'non_stream', 'jax'))
  (copy / 'labels.txt').unlink()
  with pytest.raises(FileNotFoundError, match='labels.txt is missing'):
    export_run(str(copy), progress=False)
  with pytest.raises(ValueError, match='--out .* is a file'):
    export_run(workdir, str(copy / 'config.json'), progress=False)


def test_export_from_another_directory_finds_the_data_of_the_run(
    tiny_data, tmp_path, monkeypatch):
  # Trained from the data's parent with a relative data_dir, loaded from
  # elsewhere: the path resolves through working_directory.txt.
  monkeypatch.chdir(os.path.dirname(tiny_data))
  config = tiny_config(os.path.basename(tiny_data))
  workdir = str(tmp_path / 'run')
  train_and_evaluate(config, workdir, progress=False)
  monkeypatch.chdir(tmp_path)
  loaded, _, _ = load_run(workdir)
  assert loaded.data.data_dir == tiny_data
  (tmp_path / 'run' / 'working_directory.txt').unlink()
  with pytest.raises(FileNotFoundError, match=r'the data of .* \(\'tiny_speech'
                     r'\d*\'\) is not found from here .* nor from where the '
                     r'run was trained \(not recorded\)'):
    export_run(workdir, progress=False)


def test_ops_are_listed_from_every_subgraph(exported):
  _, manifest = exported
  ops = manifest['tflite']
  internal = set(ops['tflite_stream_state_internal']['ops'])
  external = set(ops['tflite_stream_state_external']['ops'])
  # Subgraph 0 of an internal-state model holds only its variables; the
  # convolutions run in the subgraph it calls.
  assert {'VAR_HANDLE', 'CALL_ONCE'} <= internal
  assert external <= internal and 'CONV_2D' in internal
