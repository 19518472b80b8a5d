"""The main job end to end on a tiny setting, and the JAX streaming accuracy."""

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


def test_quickstart_synthesizes_trains_and_streams(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'kws_jax.quickstart', '--workdir',
       str(tmp_path / 'run'), '--data_dir', str(tmp_path / 'data'),
       '--per_word', '30', *TINY_MODEL],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  table = {line[:40].strip(): line[40:].split() for line in lines
           if line.startswith('JAX ')}
  accuracies = {row[0] for row in table.values()}
  assert len(table) == 3 and len(accuracies) == 1  # the CNN streams exactly
  printed = accuracies.pop()
  for name in ('non_stream_model_accuracy.txt',
               'stream_model_accuracy_reset0.txt',
               'stream_model_accuracy_reset1.txt'):
    with open(tmp_path / 'run' / 'jax' / name) as f:
      assert f'{float(f.read()) / 100:.2%}' == printed
  diff = float(next(l for l in lines if 'max |diff|' in l).rsplit('= ', 1)[1])
  assert diff < 1e-4
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
