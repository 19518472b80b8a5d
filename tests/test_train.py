"""Training: schedules, a smoke run with its artifacts, checkpoints, resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kws_jax import config as kws_config
from kws_jax.data.synth import synthesize_dataset
from kws_jax.models import cnn
from kws_jax.train import loop, optim, steps, train_and_evaluate
from kws_jax.train.checkpoints import Checkpoints
from kws_jax.train.workdir import config_differences

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory) -> str:
  """Two keywords and two unknown words, 40 synthetic speakers (~2 s)."""
  path = str(tmp_path_factory.mktemp('tiny_speech'))
  return synthesize_dataset(path, words=('yes', 'no'), per_word=40,
                            unknown_words=('bed', 'cat'), per_unknown_word=10,
                            num_speakers=40, workers=1, progress=False)


def tiny_config(data_dir: str) -> ml_collections.ConfigDict:
  config = kws_config.default_config()
  config.model = cnn.default_config()
  config.model.update(
      preprocess='mfcc', cnn_filters='4,4', cnn_kernel_size='(3,3),(5,3)',
      cnn_act="'relu','relu'", cnn_dilation_rate='(1,1),(2,1)',
      cnn_strides='(1,1),(1,2)', units2='8', act2="'relu'", dropout1=0.1)
  config.data.update(data_dir=data_dir, wanted_words='yes,no', num_threads=1)
  config.schedule.update(how_many_training_steps='4,2',
                         learning_rate='0.01,0.001')
  config.train.update(batch_size=8, eval_step_interval=3, log_every=1)
  return config


# -- Schedules ------------------------------------------------------------


def schedule_config(kind: str, warmup: int = 0) -> ml_collections.ConfigDict:
  config = kws_config.default_config().schedule
  config.update(lr_schedule=kind, warmup_steps=warmup)
  return config


@pytest.mark.parametrize('step, expected', [
    (0, 5e-4), (9999, 5e-4), (10000, 1e-4), (19999, 1e-4), (20000, 2e-5),
    (29999, 2e-5), (40000, 2e-5)])
def test_linear_schedule_is_constant_per_phase(step, expected):
  schedule = optim.learning_rate_schedule(schedule_config('linear'))
  assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('step, expected', [
    (0, 5e-4 * (2e-5 / 5e-4)**(1 / 30000)),
    (14999, 5e-4 * (2e-5 / 5e-4)**0.5),
    (29999, 2e-5)])
def test_exp_schedule_decays_from_first_to_last_rate(step, expected):
  schedule = optim.learning_rate_schedule(schedule_config('exp'))
  assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_warmup_ramps_linearly():
  schedule = optim.learning_rate_schedule(schedule_config('linear', 100))
  assert float(schedule(0)) == pytest.approx(5e-6)
  assert float(schedule(49)) == pytest.approx(2.5e-4)
  assert float(schedule(99)) == pytest.approx(5e-4)
  assert optim.total_steps(schedule_config('linear')) == 30000


@pytest.mark.parametrize('section, field, value, fragment', [
    ('optimizer', 'name', 'adagrad', "optimizer.name is 'adagrad'"),
    ('schedule', 'lr_schedule', 'cosine', "schedule.lr_schedule is 'cosine'"),
    ('schedule', 'learning_rate', '0.001',
     'how_many_training_steps has 2, learning_rate has 1'),
    ('schedule', 'how_many_training_steps', '100,0',
     'expected positive step counts'),
    ('train', 'batch_size', 0, 'train.batch_size is 0'),
    ('train', 'eval_step_interval', 0, 'train.eval_step_interval is 0'),
    ('train', 'microbatches', 3,
     'train.microbatches is 3, expected a divisor of train.batch_size (8)'),
    ('model', 'label_count', 5, 'model.label_count is 5 but the data has 4'),
    ('data', 'wanted_words', 'yes,maybe', "'maybe'"),
    ('data', 'device_augmentation', 'gpu',
     "data.device_augmentation is 'gpu', expected one of 'auto', 'on', 'off'"),
    ('data', 'clips_on_device', 'yes',
     "data.clips_on_device is 'yes', expected one of 'auto', 'on', 'off'"),
    ('data', 'clips_on_device', 'on',
     "data.clips_on_device is 'on' but the augmentation runs on the host"),
])
def test_bad_configs_fail_before_training(tiny_data, tmp_path, section, field,
                                          value, fragment):
  config = tiny_config(tiny_data)
  config[section][field] = value
  with pytest.raises(ValueError) as error:
    train_and_evaluate(config, str(tmp_path / 'run'), progress=False)
  assert fragment in str(error.value)
  assert not (tmp_path / 'run' / 'checkpoints').exists()


# -- A whole (tiny) run ------------------------------------------------------


@pytest.fixture(scope='module')
def tiny_run(tiny_data, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  result = train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  return workdir, result


def test_smoke_run_writes_kws_streaming_artifacts(tiny_run):
  workdir, result = tiny_run
  files = set(os.listdir(workdir))
  assert {'labels.txt', 'config.json', 'flags.txt', 'model_summary.txt',
          'accuracy_last.txt', 'accuracy_best.txt', 'metrics.jsonl',
          'curves.png', 'confusion_matrix.png', 'checkpoints', 'logs'} <= files
  with open(os.path.join(workdir, 'labels.txt')) as f:
    assert f.read().split() == ['_silence_', '_unknown_', 'yes', 'no']
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['cnn_filters'] == '4,4'
  with open(os.path.join(workdir, 'accuracy_best.txt')) as f:
    assert float(f.read()) == pytest.approx(100 * result['test_accuracy'])
  with open(os.path.join(workdir, 'model_summary.txt')) as f:
    assert 'Total params:' in f.read()
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  train_rows = [r for r in rows if r['split'] == 'train']
  assert [r['step'] for r in train_rows] == [1, 2, 3, 4, 5, 6]
  assert [r['learning_rate'] for r in train_rows] == pytest.approx(
      [0.01] * 4 + [0.001] * 2)
  assert all(np.isfinite(r['loss']) and r['grad_norm'] > 0 for r in train_rows)
  assert [r['step'] for r in rows if r['split'] == 'validation'] == [3, 6]
  assert 0.0 <= result['test_accuracy'] <= 1.0
  for split in ('train', 'validation'):
    events = os.listdir(os.path.join(workdir, 'logs', split))
    assert any(name.startswith('events.out.tfevents') for name in events)
  assert os.path.getsize(os.path.join(workdir, 'curves.png')) > 5000


def test_finished_run_resumes_as_a_no_op(tiny_data, tiny_run):
  workdir, result = tiny_run
  again = train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  assert again == result


def test_workdir_of_another_config_is_refused(tiny_data, tiny_run, tmp_path):
  workdir, _ = tiny_run
  config = tiny_config(tiny_data)
  config.model.cnn_filters = '4,6'
  with pytest.raises(ValueError) as error:
    train_and_evaluate(config, workdir, progress=False)
  message = str(error.value)
  assert "model.cnn_filters: workdir has '4,4', config has '4,6'" in message
  assert '--overwrite' in message


def test_config_differences_ignore_run_time_fields():
  saved = {'data': {'num_threads': 1, 'resample': 0.15}, 'train': {'seed': 0}}
  current = {'data': {'num_threads': 2, 'resample': 0.1}, 'train': {'seed': 0}}
  assert config_differences(saved, current) == [
      'data.resample: workdir has 0.15, config has 0.1']


@pytest.mark.parametrize('value, differs', [('auto', False), ('off', False),
                                            ('on', True)])
def test_runs_saved_before_device_augmentation_resume(value, differs):
  saved = {'data': {'resample': 0.15}}
  current = {'data': {'resample': 0.15, 'device_augmentation': value}}
  assert config_differences(saved, current) == (
      [f"data.device_augmentation: workdir has '(missing)', config has "
       f"{value!r}"] if differs else [])


def test_nan_loss_stops_naming_the_step(tiny_data, tmp_path):
  config = tiny_config(tiny_data)
  config.schedule.learning_rate = '1e30,1e30'
  config.optimizer.name = 'momentum'
  with pytest.raises(FloatingPointError, match=r'at step \d+; stopping'):
    train_and_evaluate(config, str(tmp_path), progress=False)


# -- Augmentation on the device ---------------------------------------------


def test_device_augmentation_choices():
  config = tiny_config('unused')
  assert loop.augments_on_device(config) == (jax.default_backend() != 'cpu')
  config.data.device_augmentation = 'on'
  assert loop.augments_on_device(config)
  config.data.device_augmentation = 'off'
  assert not loop.augments_on_device(config)
  config.acoustics.enabled = 1
  config.data.device_augmentation = 'auto'
  assert not loop.augments_on_device(config)  # acoustics run on the host
  config.data.device_augmentation = 'on'
  with pytest.raises(ValueError, match="data.device_augmentation is 'on' but "
                     'acoustics.enabled is set'):
    loop.check_config(config)


def test_clips_on_device_choices(tiny_data):
  config = tiny_config(tiny_data)
  dataset = loop.load_dataset(config)
  config.data.device_augmentation = 'on'
  # 'auto' leaves the clips on the host when JAX runs on the CPU.
  assert loop.clips_on_device(config, dataset) == (
      jax.default_backend() != 'cpu')
  config.data.clips_on_device = 'on'
  assert loop.clips_on_device(config, dataset)
  config.data.clips_on_device = 'off'
  assert not loop.clips_on_device(config, dataset)
  config.data.device_augmentation = 'off'
  config.data.clips_on_device = 'auto'
  assert not loop.clips_on_device(config, dataset)


class _Stop(Exception):
  """Ends a run from inside, as a crash would."""


def _stop(params, accuracy):
  raise _Stop


@pytest.mark.long
def test_device_augmentation_trains_resumes_and_gathers_exactly(tiny_data, tmp_path,
                                                       capsys):
  config = tiny_config(tiny_data)
  config.data.update(device_augmentation='on', use_spec_augment=1)
  config.train.checkpoint_every = 1
  reference = train_and_evaluate(config, str(tmp_path / 'reference'),
                                 progress=False)
  assert 'augmenting on the device' in capsys.readouterr().out
  rows = _metrics_rows(tmp_path / 'reference')
  losses = [r['loss'] for r in rows if r['split'] == 'train']
  assert len(losses) == 6 and np.all(np.isfinite(losses))
  # Stopped at its first evaluation (step 3): resumes from the step 2
  # checkpoint, the augmentation keys following the saved step.
  with pytest.raises(_Stop):
    train_and_evaluate(config, str(tmp_path / 'resumed'), progress=False,
                       selector=_stop)
  _assert_same_run(config, tmp_path / 'resumed', reference, rows)
  assert 'resuming cnn' in capsys.readouterr().out
  # The training split read once and gathered on the device: the same run.
  config.data.clips_on_device = 'on'
  _assert_same_run(config, tmp_path / 'gathered', reference, rows)
  assert 'training clips on the device' in capsys.readouterr().out


def _assert_same_run(config, workdir, reference, rows):
  """Trains ``config`` in ``workdir``: the results and metrics rows of
  ``reference``."""
  result = train_and_evaluate(config, str(workdir), progress=False)
  assert dict(result, workdir=reference['workdir']) == reference
  assert _metrics_rows(workdir) == rows


def test_augment_keys_are_a_stream_of_their_own():
  keys = [steps.augment_key(0, step) for step in range(3)]
  data = {tuple(np.asarray(jax.random.key_data(key)).tolist())
          for key in keys + [jax.random.fold_in(jax.random.key(0), step)
                             for step in range(3)]}
  assert len(data) == 6
  np.testing.assert_array_equal(jax.random.key_data(steps.augment_key(0, 1)),
                                jax.random.key_data(steps.augment_key(0, 1)))


# -- Checkpoints -------------------------------------------------------------


def _state(value: float):
  return {'step': jnp.asarray(int(value), jnp.int32),
          'params': {'dense': {'kernel': jnp.full((3, 2), value)}},
          'opt_state': (jnp.zeros(()), {'mu': jnp.full((2,), -value)})}


def test_checkpoint_round_trip_and_best(tmp_path):
  checkpoints = Checkpoints(str(tmp_path), max_to_keep=2)
  for step, accuracy in ((1, 0.5), (2, 0.7), (3, 0.6)):
    checkpoints.save_last(_state(step))
    checkpoints.offer_best(_state(step), accuracy)
  restored = checkpoints.restore_last(_state(0))
  assert int(restored['step']) == 3
  np.testing.assert_array_equal(restored['params']['dense']['kernel'],
                                np.full((3, 2), 3.0))
  assert isinstance(restored['opt_state'], tuple)
  best = checkpoints.restore_best(_state(0))
  assert int(best['step']) == 2 and checkpoints.best_score == 0.7
  assert sorted(os.listdir(tmp_path / 'last')) == ['2', '3']


def test_corrupt_checkpoint_falls_back_with_a_warning(tmp_path):
  checkpoints = Checkpoints(str(tmp_path), max_to_keep=3)
  for step in (1, 2):
    checkpoints.save_last(_state(step))
  checkpoints.close()
  for root, _, files in os.walk(tmp_path / 'last' / '2'):
    for name in files:
      if name != 'commit_success.txt' and not name.startswith('_'):
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'\x00garbage')
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    restored = Checkpoints(str(tmp_path), max_to_keep=3).restore_last(
        _state(0))
  assert int(restored['step']) == 1
  assert any('last/2 cannot be read' in str(w.message) for w in caught)


# -- Resume after SIGKILL and data parallelism (subprocesses) ---------------

TRAIN_SCRIPT = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_train import tiny_config
    from kws_jax.train import train_and_evaluate
    config = tiny_config({data!r})
    config.schedule.how_many_training_steps = '8,4'
    config.train.update(checkpoint_every=1, eval_step_interval=4)
    result = train_and_evaluate(config, {workdir!r}, progress=False)
    print('RESULT', json.dumps(result))
''')


def _train_process(data_dir: str, workdir: str, env=None) -> subprocess.Popen:
  script = TRAIN_SCRIPT.format(tests=os.path.join(REPO, 'tests'),
                               data=data_dir, workdir=workdir)
  return subprocess.Popen([sys.executable, '-c', script], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env)


def _metrics_rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.mark.long
def test_resume_after_sigkill_equals_uninterrupted_run(tiny_data, tmp_path):
  reference = _train_process(tiny_data, str(tmp_path / 'reference'))
  killed_dir = tmp_path / 'killed'
  victim = _train_process(tiny_data, str(killed_dir))
  deadline = time.time() + 240
  while time.time() < deadline:  # kill it once a few steps are saved
    last = killed_dir / 'checkpoints' / 'last'
    if last.exists() and any(name.isdigit() and int(name) >= 5
                             for name in os.listdir(last)):
      break
    assert victim.poll() is None, victim.communicate()[1][-2000:]
    time.sleep(0.05)
  victim.send_signal(signal.SIGKILL)
  victim.wait()
  assert victim.returncode == -signal.SIGKILL
  resumed = _train_process(tiny_data, str(killed_dir))
  outputs, stdouts = {}, {}
  for name, process in (('reference', reference), ('resumed', resumed)):
    stdouts[name], stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    outputs[name] = json.loads(stdouts[name].split('RESULT ', 1)[1])
  resumed_from = int(stdouts['resumed'].split(' from step ', 1)[1].split()[0])
  assert stdouts['resumed'].startswith('resuming cnn') and resumed_from >= 5
  outputs['resumed']['workdir'] = outputs['reference']['workdir']
  assert outputs['resumed'] == outputs['reference']
  assert _metrics_rows(killed_dir) == _metrics_rows(tmp_path / 'reference')


PARALLEL_SCRIPT = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, {tests!r})
    import jax
    from test_train import tiny_config
    from kws_jax.train import train_and_evaluate
    config = tiny_config({data!r})
    config.train.batch_size = {batch}
    try:
      result = train_and_evaluate(config, {workdir!r}, progress=False)
    except ValueError as error:
      print('ERROR', error); sys.exit(0)
    rows = [json.loads(l) for l in open({workdir!r} + '/metrics.jsonl')]
    print('DEVICES', jax.device_count())
    print('LOSSES', json.dumps([r['loss'] for r in rows if r['split'] == 'train']))
''')


def _parallel_run(data_dir: str, workdir: str, devices: int, batch: int = 8
                  ) -> str:
  env = dict(os.environ,
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  script = PARALLEL_SCRIPT.format(tests=os.path.join(REPO, 'tests'),
                                  data=data_dir, workdir=workdir, batch=batch)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout


@pytest.mark.long
def test_data_parallel_losses_equal_single_device(tiny_data, tmp_path):
  single = _parallel_run(tiny_data, str(tmp_path / 'one'), 1)
  double = _parallel_run(tiny_data, str(tmp_path / 'two'), 2)
  assert 'DEVICES 2' in double
  losses = [json.loads(out.split('LOSSES ', 1)[1]) for out in (single, double)]
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
  odd = _parallel_run(tiny_data, str(tmp_path / 'odd'), 2, batch=7)
  assert ('ERROR train.batch_size is 7, which does not divide over the 2 '
          'devices') in odd
