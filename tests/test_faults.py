"""Nothing lost, nothing silent: the break-it cases of issue 10, as tests.

Each case was a reproduction that lost a checkpoint or gave a silently wrong
result; each test failed before its fix.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

from absl import flags

from kws_jax import atomic, cli
from kws_jax.data import audio
from kws_jax.data.synth_stream import read_stream_labels
from kws_jax.data.speech_commands import load_speech_commands
from kws_jax.detect import detector
from kws_jax.detect.__main__ import main as detect_main
from kws_jax.detect.runners import JaxRunner
from kws_jax.train import train_and_evaluate
from kws_jax.train import workdir as run_files
from kws_jax.train.checkpoints import Checkpoints, UnreadableCheckpoints, load_run
from test_data_audio import wav_bytes
from test_train import _parallel_run, _state, tiny_config, tiny_data  # pylint: disable=unused-import


def _steps(directory):
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


@pytest.fixture(scope='module')
def finished_run(tiny_data, tmp_path_factory):  # pylint: disable=redefined-outer-name
  workdir = str(tmp_path_factory.mktemp('finished'))
  result = train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  return workdir, result


def _copy(finished_run, tmp_path):  # pylint: disable=redefined-outer-name
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished_run[0], workdir)
  return workdir


@pytest.mark.parametrize('junk', ['empty', 'partial'])
def test_an_unreadable_newest_step_never_costs_the_best_checkpoint(
    tiny_data, finished_run, tmp_path, junk):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  last = os.path.join(workdir, 'checkpoints', 'last')
  best = os.path.join(workdir, 'checkpoints', 'best')
  best_before = _steps(best)
  newest = os.path.join(last, '70')
  os.makedirs(newest)
  if junk == 'partial':
    with open(os.path.join(newest, '_CHECKPOINT_METADATA'), 'w') as file:
      file.write('{')
  with pytest.warns(UserWarning, match='moved to .*unreadable'):
    again = train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  assert again['test_accuracy'] == finished_run[1]['test_accuracy']
  assert again['best_step'] == finished_run[1]['best_step']
  assert _steps(best) == best_before
  assert 70 not in _steps(last)
  [aside] = os.listdir(os.path.join(workdir, 'checkpoints', 'unreadable'))
  assert aside.startswith('last_70_')


def _garble(step_dir, metrics=False):
  """Overwrites the payload files of a checkpoint (and its metrics)."""
  for root, _, files in os.walk(step_dir):
    for name in files:
      if name.startswith('_') or name == 'commit_success.txt':
        continue
      if ('metrics' in os.path.relpath(root, step_dir)) != metrics:
        continue
      with open(os.path.join(root, name), 'wb') as file:
        file.write(b'\x00garbage')


def test_no_readable_checkpoint_refuses_instead_of_starting_over(tmp_path):
  checkpoints = Checkpoints(str(tmp_path), max_to_keep=3)
  checkpoints.save_last(_state(1))
  checkpoints.offer_best(_state(1), 0.5)
  checkpoints.close()
  for kind in ('last', 'best'):
    _garble(tmp_path / kind / '1')
  reopened = Checkpoints(str(tmp_path), max_to_keep=3)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', UserWarning)
    with pytest.raises(UnreadableCheckpoints, match='nothing was deleted'):
      reopened.restore_last(_state(0))
    with pytest.raises(UnreadableCheckpoints, match='best can be read'):
      reopened.restore_best(_state(0))
  assert _steps(tmp_path / 'last') == [1] and _steps(tmp_path / 'best') == [1]
  # A corrupt metrics file (read when orbax opens the directory).
  _garble(tmp_path / 'best' / '1', metrics=True)
  with pytest.raises(UnreadableCheckpoints, match='best cannot be opened'):
    Checkpoints(str(tmp_path), max_to_keep=3)


def test_an_unreadable_best_keeps_its_accuracy_file(tiny_data, finished_run,
                                                    tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  best = os.path.join(workdir, 'checkpoints', 'best')
  [step] = _steps(best)
  _garble(os.path.join(best, str(step)))
  accuracy_file = os.path.join(workdir, 'accuracy_best.txt')
  before = open(accuracy_file).read()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', UserWarning)
    with pytest.raises(UnreadableCheckpoints, match='best'):
      train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  assert open(accuracy_file).read() == before
  assert _steps(best) == [step]


def test_checkpoints_without_a_config_are_refused(tiny_data, finished_run,
                                                  tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  os.remove(os.path.join(workdir, 'config.json'))
  config = tiny_config(tiny_data)
  config.model.cnn_filters = '4,6'  # another model would have come in
  with pytest.raises(ValueError, match='holds checkpoints .* but no '
                     'config.json'):
    train_and_evaluate(config, workdir, progress=False)
  with open(os.path.join(workdir, 'config.json'), 'w') as file:
    file.write('{"model": ')  # cut short
  with pytest.raises(ValueError, match='config.json cannot be read'):
    train_and_evaluate(config, workdir, progress=False)
  assert _steps(os.path.join(workdir, 'checkpoints', 'best'))
  json.dumps(finished_run[1])  # the finished run's result is untouched


def test_clips_at_another_rate_than_the_config_are_refused(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  config = tiny_config(tiny_data)
  config.data.sample_rate = 8000
  config.frontend.mel_upper_edge_hertz = 3800.0  # below 8 kHz Nyquist
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError, match=r'clips in .* are not at '
                     r'data.sample_rate=8000 Hz \(found 16000 Hz: \d+'):
    train_and_evaluate(config, str(workdir), progress=False)
  assert not workdir.exists()  # refused before anything was written


@pytest.mark.parametrize('field, value, message', [
    ('data.resample', 1.5, 'data.resample is 1.5, expected 0 <= resample'),
    ('data.background_frequency', 2.0, 'data.background_frequency is 2.0'),
    ('data.time_shift_ms', -10.0, 'data.time_shift_ms is -10.0'),
    ('data.volume_resample', float('nan'), 'data.volume_resample is nan'),
    ('train.seed', -1, 'train.seed is -1, expected 0 <= seed'),
    ('schedule.learning_rate', '1e999,0.001',
     'expected positive, finite rates'),
])
def test_nonsense_settings_are_refused_before_the_workdir_exists(
    tiny_data, tmp_path, field, value, message):  # pylint: disable=redefined-outer-name
  config = tiny_config(tiny_data)
  section, name = field.split('.')
  setattr(config[section], name, value)
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError, match=message):
    train_and_evaluate(config, str(workdir), progress=False)
  assert not workdir.exists()


def test_running_a_finished_run_again_logs_one_test_row(tiny_data,
                                                       finished_run, tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  path = os.path.join(workdir, 'metrics.jsonl')
  before = open(path).read()
  for _ in range(2):
    train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  rows = [json.loads(line) for line in open(path)]
  assert [r['split'] for r in rows].count('test') == 1
  assert open(path).read() == before


def test_a_clip_with_nan_samples_is_skipped_and_listed(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  data_dir = tmp_path / 'data'
  shutil.copytree(tiny_data, data_dir)
  clip = sorted((data_dir / 'yes').glob('*.wav'))[0]
  samples = audio.read_wav(clip)
  samples[100] = np.nan
  clip.write_bytes(wav_bytes(samples[:, None], 16000, 'float32'))
  with pytest.warns(UserWarning, match=r'(?s)skipped 1 unreadable WAV file\(s\) '
                    r'.*with NaN samples.*' + clip.name):
    dataset = load_speech_commands(str(data_dir), wanted_words=('yes', 'no'))
  every = [e.path for split in ('training', 'validation', 'testing')
           for e in dataset.split(split)]
  assert str(clip) not in every and len(every) > 80


_FRONTEND_ON_NAN = """
import numpy as np, jax
from kws_jax.frontend import MfccFrontend
audio = np.random.RandomState(0).randn(3, 16000).astype(np.float32) * 0.1
audio[0, 5000], audio[1, 9000] = np.nan, np.inf
features = np.asarray(jax.jit(lambda a: MfccFrontend().apply({}, a))(audio))
print(np.isnan(features).any(axis=-1).sum(axis=-1).tolist())
"""


@pytest.mark.parametrize('xla_flags', ['', cli.FAST_CPU_FLAGS])
def test_frontend_gives_nan_for_nan_audio_whatever_the_xla_flags(xla_flags):
  # Fused YNNPACK kernels return x for maximum(NaN, x): without the guard
  # the NaN clip had finite features under the command-line tools' flag.
  env = {**os.environ, 'XLA_FLAGS': xla_flags, 'JAX_PLATFORMS': 'cpu'}
  out = subprocess.run([sys.executable, '-c', _FRONTEND_ON_NAN], env=env,
                       capture_output=True, text=True, check=True).stdout
  # 640-sample windows every 320 samples: each bad sample is in two frames.
  assert out.strip().splitlines()[-1] == '[2, 2, 0]'


def test_a_stream_reads_nan_samples_as_zeros_with_one_warning(tmp_path):
  samples = 0.3 * np.sin(np.arange(48000) / 7.0)
  samples[[1000, 20000, 40000]] = np.nan
  samples[30000] = 4.0
  path = tmp_path / 'stream.wav'
  path.write_bytes(wav_bytes(samples[:, None], 16000, 'float32'))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    read = np.concatenate(list(detector.wav_chunks(path)))
  messages = [str(w.message) for w in caught]
  assert len(messages) == 2, messages
  assert 'NaN or infinite sample(s), the first at 0.062 s' in messages[0]
  assert 'clipped to [-1, 1]' in messages[1]
  expected = np.clip(np.nan_to_num(samples, nan=0.0), -1, 1)
  np.testing.assert_allclose(read, expected, atol=1e-7)


def test_a_damaged_checkpoint_fails_its_checksum_and_the_one_before_is_used(
    tmp_path):
  checkpoints = Checkpoints(str(tmp_path / 'run'), max_to_keep=3)
  for step in (1, 2):
    checkpoints.save_last(_state(step))
  checkpoints.close()
  # Valid orbax files of other values under step 2, as a flipped bit in a
  # weight file would leave: orbax itself reads them without complaint.
  other = Checkpoints(str(tmp_path / 'other'), max_to_keep=3)
  other.save_last({**_state(7), 'step': _state(2)['step']})
  other.close()
  damaged = tmp_path / 'run' / 'last' / '2' / 'default'
  shutil.rmtree(damaged)
  shutil.copytree(tmp_path / 'other' / 'last' / '2' / 'default', damaged)
  reopened = Checkpoints(str(tmp_path / 'run'), max_to_keep=3)
  with pytest.warns(UserWarning, match='do not match the checksum'):
    restored = reopened.restore_last(_state(0))
  assert int(restored['step']) == 1
  np.testing.assert_array_equal(restored['params']['dense']['kernel'], 1.0)


def test_a_step_saved_again_with_other_values_replaces_the_old_ones(tmp_path):
  checkpoints = Checkpoints(str(tmp_path), max_to_keep=3)
  checkpoints.save_last(_state(2))
  checkpoints.save_last({**_state(5), 'step': _state(2)['step']})
  restored = checkpoints.restore_last(_state(0))
  np.testing.assert_array_equal(restored['params']['dense']['kernel'], 5.0)


def test_a_run_trained_on_two_devices_loads_on_one(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  workdir = str(tmp_path / 'two')
  assert 'DEVICES 2' in _parallel_run(tiny_data, workdir, 2)
  assert jax.device_count() == 1
  for which in ('best', 'last'):
    _, _, params = load_run(workdir, which)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))
  runner = JaxRunner.from_workdir(workdir)
  assert np.isfinite(runner(np.zeros(runner.block_samples, np.float32))).all()


def test_a_workdir_that_is_a_file_is_refused(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  path = tmp_path / 'run'
  path.write_text('not a directory')
  with pytest.raises(ValueError, match='--workdir .*run is a file'):
    train_and_evaluate(tiny_config(tiny_data), str(path), progress=False)


def test_a_second_training_in_one_workdir_is_refused(tiny_data, finished_run,
                                                     tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  with run_files.locked(workdir):
    with pytest.raises(run_files.WorkdirBusy,
                       match=f'in use by another training \\(process '
                       f'{os.getpid()}'):
      train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)


def test_a_run_without_a_checkpoint_restarts_with_another_config(
    tiny_data, finished_run, tmp_path, capsys):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'checkpoints'))  # as if it died early
  config = tiny_config(tiny_data)
  config.model.cnn_filters = '4,6'
  train_and_evaluate(config, workdir, progress=False)
  assert 'stopped before its first checkpoint; starting over' in (
      capsys.readouterr().out)
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['model']['cnn_filters'] == '4,6'
  steps = [r['step'] for r in map(json.loads, open(
      os.path.join(workdir, 'metrics.jsonl'))) if r['split'] == 'train']
  assert steps == sorted(set(steps))  # one run's rows, not two


def test_leftovers_of_killed_writes_are_removed_at_the_next_start(
    tiny_data, finished_run, tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  leftovers = [os.path.join(workdir, '.curves.png.x1y2z3ab.tmp'),
               os.path.join(workdir, '.tflite_non_stream.q9w8e7rt.tmp')]
  open(leftovers[0], 'w').close()
  os.makedirs(leftovers[1])
  keep = os.path.join(workdir, '.notes.txt')
  open(keep, 'w').close()
  train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  assert not any(os.path.exists(path) for path in leftovers)
  assert os.path.exists(keep)


def test_overwrite_retires_the_manifest_of_the_old_weights(
    tiny_data, finished_run, tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  manifest = os.path.join(workdir, 'manifest.json')
  with open(manifest, 'w') as file:
    json.dump({'labels': ['old']}, file)
  train_and_evaluate(tiny_config(tiny_data), workdir, overwrite=True,
                     progress=False)
  assert not os.path.exists(manifest)


def test_a_corrupt_config_is_named_when_a_run_is_loaded(finished_run,
                                                        tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  with open(os.path.join(workdir, 'config.json'), 'w') as file:
    file.write('{"data": ')
  with pytest.raises(ValueError, match=r'run/config.json cannot be read'):
    load_run(workdir)


def test_a_missing_config_file_is_one_line(tmp_path):
  values = flags.FlagValues()
  with pytest.raises(SystemExit, match=r'--config .*nope.py: no such config '
                     'file'):
    cli.parse_config_flags(['prog', '--config', str(tmp_path / 'nope.py')],
                           values)


def test_model_inputs_name_the_expected_layout(finished_run):  # pylint: disable=redefined-outer-name
  _, model, params = load_run(finished_run[0])
  state = model.init_state(1)
  frame = np.zeros(model.block_size * int(np.prod(model.input_shape)),
                   np.float32).reshape(model.block_size, *model.input_shape)
  layout = ', '.join(map(str, (model.block_size, *model.input_shape)))
  with pytest.raises(ValueError, match=re.escape(
      f'expected [batch, {layout}] or n blocks')):
    model.step(params, state, frame)
  for call in (lambda: model.step(None, state, frame[None]),
               lambda: model.apply(None, frame[None])):
    with pytest.raises(ValueError, match='params is NoneType, expected the '
                       'dict'):
      call()


def test_a_full_disk_names_the_file_and_the_space_left(tmp_path):
  path = tmp_path / 'out' / 'model.tflite'
  with pytest.raises(atomic.NoSpaceError, match=r'no space left on the device '
                     r'to write .*model.tflite \([\d,]+ bytes free'):
    with atomic.atomic_write(path) as file:
      file.write(b'partial')
      raise OSError(errno.ENOSPC, 'No space left on device')
  assert os.listdir(tmp_path / 'out') == []  # the temporary is gone


@pytest.mark.parametrize('content, message', [
    ('word,start\nyes,1\n', r"columns \['start', 'word'\]"),
    ('word,start_s,end_s\nyes,abc,1\n', r"line 2: 'yes,abc,1': could not "
     'convert'),
    ('word,start_s,end_s\nyes,1\n', 'line 2: .*expected 3 fields'),
    ('word,start_s,end_s\nyes,1,2,3\n', 'line 2: .*expected 3 fields'),
    ('word,start_s,end_s\nyes,2,1\n', r'line 2: .*0 <= start_s <= end_s'),
    ('word,start_s,end_s\nyes,0,nan\n', r'line 2: .*finite times'),
    ('word,start_s,end_s\n,0,1\n', 'line 2: .*the word is empty'),
])
def test_a_malformed_ground_truth_csv_names_the_line(tmp_path, content,
                                                     message):
  path = tmp_path / 'truth.csv'
  path.write_text(content)
  with pytest.raises(ValueError, match=message):
    read_stream_labels(path)


def test_detect_checks_its_output_before_streaming(finished_run, tmp_path,
                                                   capsys):  # pylint: disable=redefined-outer-name
  blocker = tmp_path / 'file'
  blocker.write_text('')
  truth = tmp_path / 'truth.csv'
  truth.write_text('word,start_s,end_s\nyes,0.1,0.5\n')
  with pytest.raises(SystemExit, match=r'--out .*file/out is not a writable '
                     'directory: Not a directory'):
    detect_main(['--workdir', finished_run[0], '--wav', '/nonexistent.wav',
                 '--labels-csv', str(truth), '--out', str(blocker / 'out')])
  assert 'detections' not in capsys.readouterr().out


def test_a_longer_clip_than_the_files_trains(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  config = tiny_config(tiny_data)
  config.data.clip_duration_ms = 1500.0  # the files are 1 s: zero-padded
  result = train_and_evaluate(config, str(tmp_path / 'run'), progress=False)
  assert result['steps'] == 6 and 0.0 <= result['test_accuracy'] <= 1.0
  _, model, _ = load_run(str(tmp_path / 'run'))
  assert model.clip_length == 74  # 1.5 s of 20 ms frames, 40 ms windows


def test_a_run_saved_before_a_field_existed_resumes(tiny_data, finished_run,
                                                    tmp_path):  # pylint: disable=redefined-outer-name
  workdir = _copy(finished_run, tmp_path)
  path = os.path.join(workdir, 'config.json')
  saved = json.load(open(path))
  del saved['frontend']['padding']  # as written before the field existed
  with open(path, 'w') as file:
    json.dump(saved, file)
  again = train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  assert again['test_accuracy'] == finished_run[1]['test_accuracy']
  config = tiny_config(tiny_data)
  config.frontend.padding = 'semicausal'  # computes something else: refused
  with open(path, 'w') as file:
    json.dump(saved, file)
  with pytest.raises(ValueError, match=r"frontend.padding: workdir has "
                     r"'\(missing\)', config has 'semicausal'"):
    train_and_evaluate(config, workdir, progress=False)
