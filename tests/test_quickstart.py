"""The main job end to end on a tiny setting, and the JAX streaming accuracy."""

import json
import os
import subprocess
import sys

import jax
import pytest

from kws_jax import evaluate
from kws_jax.models import build_model
from kws_jax.train.loop import load_dataset
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_MODEL = [
    '--config', 'experiments/configs/cnn_synth.py',
    '--config.model.preprocess=raw', '--config.model.cnn_filters=4,4',
    '--config.model.cnn_kernel_size=(3,3),(5,3)',
    "--config.model.cnn_act='relu','relu'",
    '--config.model.cnn_dilation_rate=(1,1),(2,1)',
    '--config.model.cnn_strides=(1,1),(1,2)', '--config.model.units2=8',
    "--config.model.act2='relu'", '--config.data.wanted_words=yes,no',
    '--config.schedule.how_many_training_steps=6',
    '--config.schedule.learning_rate=0.005', '--config.train.batch_size=16',
    '--config.train.eval_step_interval=3',
]


@pytest.mark.long
def test_quickstart_runs_the_whole_pipeline(tmp_path):
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'kws_jax.quickstart', '--workdir', str(workdir),
       '--data_dir', str(tmp_path / 'data'), '--per_word', '30',
       '--stream_minutes', '0.5', '--heldout_dir', str(tmp_path / 'kokoro'),
       '--heldout_per_word', '2', *TINY_MODEL],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  rows = {}
  for line in lines:
    if line.startswith(('JAX ', 'TFLite ')):
      rows[line[:68].strip()] = float(line[68:77].strip().rstrip('%'))
  assert len(rows) == 14
  float_rows = [v for k, v in rows.items() if k.startswith(('JAX', 'TFLite float'))]
  assert len(set(float_rows)) == 1  # every float form gives the same accuracy
  with open(workdir / 'jax' / 'non_stream_model_accuracy.txt') as f:
    assert float(f.read()) == pytest.approx(float_rows[0], abs=0.01)
  assert any(line.startswith('streaming detection') and 'FA/h' in line
             for line in lines)
  assert any(line.startswith('FRR at 1 FA/h') for line in lines)
  heldout = [line for line in lines if line.startswith('held-out engine')]
  assert len(heldout) == 1 and '(Kokoro-82M' in heldout[0]
  assert (workdir / 'heldout' / 'kokoro.json').exists()
  assert (workdir / 'stream_eval' / 'det_curve.png').stat().st_size > 5000
  assert (workdir / 'manifest.json').exists()
  assert os.path.exists(tmp_path / 'data' / 'yes')


@pytest.mark.parametrize('preprocess', ['mfcc', 'raw'])
def test_streaming_accuracy_equals_non_streaming_for_the_cnn(tiny_data,
                                                             preprocess):
  config = tiny_config(tiny_data)
  config.model.preprocess = preprocess
  model = build_model(config)
  params = model.init(jax.random.key(3))
  dataset = load_dataset(config)
  full = evaluate.non_streaming_accuracy(model, params, dataset, 'validation',
                                         batch_size=4)
  reset1 = evaluate.streaming_accuracy(model, params, dataset, 'validation',
                                       batch_size=4)
  reset0 = evaluate.streaming_accuracy(model, params, dataset, 'validation',
                                       batch_size=4, reset=False)
  assert full.count == reset1.count == reset0.count == 10
  assert full.correct == reset1.correct == reset0.correct
  assert reset1.max_logit_diff < 1e-4


@pytest.mark.long
def test_quickstart_default_speech_embedding_model(tmp_path):
  """The main job's default model (the embedding head), on a tiny setting."""
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'kws_jax.quickstart', '--workdir', str(workdir),
       '--data_dir', str(tmp_path / 'data'), '--per_word', '20',
       '--stream_minutes', '0.5', '--heldout_dir', '',
       '--tflite_forms', 'tflite_stream_state_external',
       '--config.model.units2=16', "--config.model.act2='relu'",
       '--config.data.wanted_words=yes,no',
       '--config.schedule.how_many_training_steps=4',
       '--config.schedule.learning_rate=0.005', '--config.train.batch_size=16',
       '--config.train.eval_step_interval=2'],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  manifest = json.loads((workdir / 'manifest.json').read_text())
  assert manifest['stream']['input']['shape'] == [1, 1280]
  assert manifest['step_ms'] == 80.0
  assert manifest['streaming_parity_max_abs_logit_diff'] <= 1e-4
  jax_accuracy = manifest['accuracy_test_split']['jax']
  assert jax_accuracy['non_stream'] == jax_accuracy['stream_reset1']
  assert any(line.startswith('streaming detection') for line in
             result.stdout.splitlines())
  assert set(manifest['tflite']) == {'tflite_stream_state_external'}


def test_quickstart_refuses_forms_without_the_detection_stream(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'kws_jax.quickstart', '--workdir',
       str(tmp_path / 'run'), '--tflite_forms', 'tflite_non_stream'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert ('--tflite_forms is tflite_non_stream; it must include '
          'tflite_stream_state_external') in result.stderr
  assert not (tmp_path / 'run').exists()
