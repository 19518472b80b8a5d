"""Batches: shapes, exact resume from any step, epochs, exact eval coverage, bad files."""

import itertools
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from kws_jax.data import acoustics, audio, pipeline, windows
from kws_jax.data import speech_commands as sc
from kws_jax.data.augment import AudioAugmentation, SpecAugment

CLIP = (
    1600  # 0.1 s clips keep the tests fast; the pipeline takes any clip length.
)


def speakers(split, count):
  found = [
      f's{i:03d}'
      for i in range(3000)
      if sc.which_set(f's{i:03d}', 10, 10) == split
  ]
  return found[:count]


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp('speech')
  rng = np.random.default_rng(0)
  names = [
      s
      for split in sc.SPLITS
      for s in speakers(
          split, {'training': 12, 'validation': 3, 'testing': 3}[split]
      )
  ]
  for word in ('yes', 'no', 'up', 'cat', 'dog'):
    for name in names:
      # Each file is recognizable: its first sample encodes (word, speaker).
      clip = rng.uniform(-0.3, 0.3, CLIP)
      clip[0] = (hash((word, name)) % 1000) / 1000
      audio.write_wav(os.path.join(root, word, f'{name}_nohash_0.wav'), clip)
  audio.write_wav(
      os.path.join(root, sc.BACKGROUND_NOISE_DIR, 'noise.wav'),
      rng.uniform(-0.5, 0.5, 5 * CLIP),
  )
  return sc.load_speech_commands(root, ('yes', 'no', 'up'))


def kwargs(**overrides):
  return {'clip_samples': CLIP, 'sample_rate': 16000, **overrides}


def test_train_batch_shapes_and_labels(dataset):
  batch = next(pipeline.train_batches(dataset, 7, seed=0, **kwargs()))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      'audio': ((7, CLIP), np.float32),
      'label': ((7,), np.int32),
      'weight': ((7,), np.float32),
  }
  assert np.all(batch['weight'] == 1) and np.all(np.abs(batch['audio']) <= 1)
  examples = dataset.split('training')
  indices = pipeline.train_example_indices(len(examples), 7, 0, 0)
  np.testing.assert_array_equal(
      batch['label'], [examples[i].label for i in indices]
  )


@pytest.mark.parametrize(
    'start_step, num_threads', [(0, 1), (3, 2), (11, 1), (25, 3)]
)
def test_resume_from_any_step_is_exact(dataset, start_step, num_threads):
  full = list(
      pipeline.train_batches(
          dataset, 16, seed=3, num_steps=30, num_threads=2, **kwargs()
      )
  )
  resumed = list(
      pipeline.train_batches(
          dataset,
          16,
          seed=3,
          start_step=start_step,
          num_steps=30 - start_step,
          num_threads=num_threads,
          **kwargs(),
      )
  )
  assert len(resumed) == 30 - start_step
  for expected, actual in zip(full[start_step:], resumed):
    for key in expected:
      np.testing.assert_array_equal(expected[key], actual[key])


def test_seeds_differ(dataset):
  first = next(pipeline.train_batches(dataset, 16, seed=1, **kwargs()))
  second = next(pipeline.train_batches(dataset, 16, seed=2, **kwargs()))
  assert not np.array_equal(first['audio'], second['audio'])


@pytest.mark.parametrize('batch_size', [1, 7, 32])
def test_every_epoch_visits_each_example_once(dataset, batch_size):
  size = len(dataset.split('training'))
  rows = np.concatenate(
      [
          pipeline.train_example_indices(size, batch_size, 5, step)
          for step in range(3 * size // batch_size + 1)
      ]
  )
  for epoch in range(3):
    assert sorted(rows[epoch * size : (epoch + 1) * size]) == list(range(size))
  assert not np.array_equal(
      rows[:size], rows[size : 2 * size]
  )  # A new permutation each epoch.


def test_unaugmented_training_rows_are_the_files(dataset):
  batch = next(
      pipeline.train_batches(dataset, 10, seed=0, augmentation=None, **kwargs())
  )
  examples = dataset.split('training')
  for row, index in enumerate(
      pipeline.train_example_indices(len(examples), 10, 0, 0)
  ):
    path = examples[index].path
    expected = np.zeros(CLIP) if path is None else audio.read_clip(path, CLIP)
    np.testing.assert_array_equal(batch['audio'][row], expected)


def test_training_silence_rows_are_background_only(dataset):
  crops = np.lib.stride_tricks.sliding_window_view(
      audio.read_wav(dataset.background_noise_paths[0]), CLIP
  )
  batches = pipeline.train_batches(
      dataset,
      50,
      seed=0,
      num_steps=4,
      augmentation=AudioAugmentation(background_frequency=1.0),
      **kwargs(),
  )
  silence_rows = 0
  for batch in batches:
    for row in np.nonzero(batch['label'] == sc.SILENCE_INDEX)[0]:
      clip = batch['audio'][row]
      # The row is volume * (a crop of the noise file), volume in (0, 0.1].
      volumes = crops @ clip / np.einsum('ij,ij->i', crops, crops)
      errors = np.abs(clip[None, :] - volumes[:, None] * crops).max(axis=1)
      best = np.argmin(errors)
      assert errors[best] < 1e-6 and 0 < volumes[best] <= 0.1
      silence_rows += 1
  assert silence_rows > 5


def test_spec_augment_masks_in_batches(dataset):
  batch = next(
      pipeline.train_batches(
          dataset,
          4,
          seed=0,
          spec_augment=SpecAugment(),
          feature_shape=(49, 40),
          **kwargs(),
      )
  )
  assert batch['time_mask'].shape == (4, 49) and batch[
      'frequency_mask'
  ].shape == (4, 40)
  with pytest.raises(ValueError, match='together'):
    pipeline.train_batches(
        dataset, 4, seed=0, spec_augment=SpecAugment(), **kwargs()
    )


@pytest.mark.parametrize('split', ['validation', 'testing'])
@pytest.mark.parametrize('batch_size', [1, 4, 10, 1000])
def test_eval_batches_cover_the_split_exactly(dataset, split, batch_size):
  examples = dataset.split(split)
  batches = list(pipeline.eval_batches(dataset, split, batch_size, **kwargs()))
  assert (
      len(batches)
      == pipeline.num_eval_batches(dataset, split, batch_size)
      == -(-len(examples) // batch_size)
  )
  audio_rows = np.concatenate([b['audio'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])
  weights = np.concatenate([b['weight'] for b in batches])
  assert all(b['audio'].shape == (batch_size, CLIP) for b in batches)
  assert weights.sum() == len(examples)
  np.testing.assert_array_equal(
      weights, np.arange(len(weights)) < len(examples)
  )
  np.testing.assert_array_equal(
      labels[: len(examples)], [e.label for e in examples]
  )
  for row, example in enumerate(examples):  # Never augmented; silence is zeros.
    expected = (
        np.zeros(CLIP)
        if example.path is None
        else audio.read_clip(example.path, CLIP)
    )
    np.testing.assert_array_equal(audio_rows[row], expected)
  assert not audio_rows[len(examples) :].any()


def test_eval_is_deterministic(dataset):
  first = list(
      pipeline.eval_batches(dataset, 'testing', 5, num_threads=1, **kwargs())
  )
  second = list(
      pipeline.eval_batches(dataset, 'testing', 5, num_threads=3, **kwargs())
  )
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a['audio'], b['audio'])


def test_file_broken_after_indexing_gets_weight_zero(dataset, tmp_path):
  broken = next(e for e in dataset.split('testing') if e.path is not None)
  copy = sc.SpeechCommands(
      data_dir=str(tmp_path),
      labels=dataset.labels,
      splits={
          **dataset.splits,
          'testing': (
              (
                  sc.Example(
                      str(tmp_path / 'gone.wav'), broken.label, broken.word
                  ),
              )
              + dataset.split('testing')[1:]
          ),
      },
      background_noise_paths=dataset.background_noise_paths,
  )
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    batches = list(pipeline.eval_batches(copy, 'testing', 100, **kwargs()))
  assert (
      batches[0]['weight'][0] == 0
      and batches[0]['weight'][1 : len(copy.split('testing'))].all()
  )
  assert any(str(tmp_path / 'gone.wav') in str(w.message) for w in caught)


def test_closing_early_does_not_hang(dataset):
  iterator = pipeline.train_batches(dataset, 8, seed=0, prefetch=6, **kwargs())
  for _ in itertools.islice(iterator, 3):
    pass
  iterator.close()


@pytest.mark.parametrize(
    'bad, message',
    [
        ({'batch_size': 0}, 'batch_size=0'),
        ({'start_step': -1}, 'start_step=-1'),
    ],
)
def test_bad_arguments(dataset, bad, message):
  with pytest.raises(ValueError, match=message):
    pipeline.train_batches(
        dataset, **{'batch_size': 4, 'seed': 0, **bad}, **kwargs()
    )


def test_short_background_noise_is_an_error(dataset, tmp_path):
  audio.write_wav(tmp_path / 'short.wav', np.zeros(CLIP))
  copy = sc.SpeechCommands(
      dataset.data_dir,
      dataset.labels,
      dataset.splits,
      (str(tmp_path / 'short.wav'),),
  )
  with pytest.raises(
      ValueError, match='short.wav: background noise of 1600 samples'
  ):
    pipeline.train_batches(copy, 4, seed=0, **kwargs())


def test_data_stage_imports_neither_jax_nor_tensorflow():
  code = (
      'import sys, kws_jax.data; '
      'print(sorted(m for m in ("jax", "tensorflow") if m in sys.modules))'
  )
  result = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True, check=True
  )
  assert result.stdout.strip() == '[]'


# -- Clips longer than the files ---------------------------------------------


def test_eval_rows_place_each_file_at_the_end_of_the_clip(dataset):
  window = 3 * CLIP
  batch = pipeline.eval_batch(dataset, 'testing', 0, batch_size=4,
                              clip_samples=window, foreground_samples=CLIP)
  assert batch['audio'].shape == (4, window)
  for row, example in enumerate(dataset.split('testing')[:4]):
    expected = (np.zeros(CLIP) if example.path is None
                else audio.read_clip(example.path, CLIP))
    np.testing.assert_array_equal(batch['audio'][row, -CLIP:], expected)
    assert not batch['audio'][row, :-CLIP].any()  # zeros before the word


def test_augmented_rows_keep_the_word_at_the_end_and_noise_before(dataset):
  window = 3 * CLIP
  batch = next(pipeline.train_batches(
      dataset, 32, seed=0, clip_samples=window, foreground_samples=CLIP,
      augmentation=AudioAugmentation(background_frequency=1.0,
                                     background_volume=0.1, time_shift_ms=0,
                                     resample=0.0),
      num_threads=1))
  examples = dataset.split('training')
  rows = pipeline.train_example_indices(len(examples), 32, 0, 0)
  words = np.array([examples[i].path is not None for i in rows])
  context, clip = batch['audio'][:, :-CLIP], batch['audio'][:, -CLIP:]
  # The noise covers the whole window; the word only its end.
  assert np.all(np.abs(context).max(axis=1) > 0)
  assert np.abs(clip[words]).mean() > 2 * np.abs(context[words]).mean()


def test_a_foreground_longer_than_the_clip_is_refused(dataset):
  with pytest.raises(ValueError, match='foreground_samples=3200, expected 1 '
                     'to clip_samples=1600'):
    next(pipeline.eval_batches(dataset, 'testing', 4, clip_samples=CLIP,
                               foreground_samples=2 * CLIP))


# -- Augmentation on the device ------------------------------------------------


def test_augment_on_device_batches_hold_placed_files_and_row_flags(dataset):
  window = 3 * CLIP
  bank = windows.from_windows(np.full((2, window), 0.25, np.float32),
                              ['yes', 'cat'], sample_rate=16000)
  options = kwargs(clip_samples=window, foreground_samples=CLIP, windows=bank,
                   window_fraction=0.25, num_threads=1)
  batches = list(pipeline.train_batches(dataset, 8, seed=4, num_steps=3,
                                        augment_on_device=True, **options))
  batch = batches[0]
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      'audio': ((8, window), np.float32), 'label': ((8,), np.int32),
      'weight': ((8,), np.float32), 'is_silence': ((8,), np.bool_),
      'augment': ((8,), np.bool_)}
  examples = dataset.split('training')
  rows = pipeline.train_example_indices(len(examples), 6, 4, 0)
  for row, index in enumerate(rows):  # unaugmented, at the end of the window
    path = examples[index].path
    expected = np.zeros(CLIP) if path is None else audio.read_clip(path, CLIP)
    np.testing.assert_array_equal(batch['audio'][row, -CLIP:], expected)
    assert not batch['audio'][row, :-CLIP].any()
    assert batch['is_silence'][row] == (path is None)
  assert batch['is_silence'].any()  # the fixture's silence share
  np.testing.assert_array_equal(batch['augment'], [True] * 6 + [False] * 2)
  assert not batch['is_silence'][6:].any()
  np.testing.assert_allclose(batch['audio'][6:], 0.25, atol=1e-4)
  # The same rows and labels as the host-augmented batch, which has no flags.
  host = next(pipeline.train_batches(dataset, 8, seed=4, **options))
  assert set(host) == {'audio', 'label', 'weight'}
  np.testing.assert_array_equal(host['label'], batch['label'])
  # A pure function of (dataset, seed, step).
  resumed = next(pipeline.train_batches(dataset, 8, seed=4, start_step=2,
                                        augment_on_device=True, **options))
  for key in batch:
    np.testing.assert_array_equal(resumed[key], batches[2][key])


def test_device_augments_a_host_batch_and_draws_masks(dataset):
  jax = pytest.importorskip('jax')
  from kws_jax.data import device_augment
  batch = next(pipeline.train_batches(dataset, 16, seed=0, num_threads=1,
                                      augment_on_device=True, **kwargs()))
  noise = [audio.read_wav(path) for path in dataset.background_noise_paths]
  settings = device_augment.DeviceAugmentation(
      AudioAugmentation(background_frequency=1.0), CLIP, SpecAugment(),
      (9, 40))
  out = jax.jit(device_augment.augment_batch, static_argnums=3)(
      jax.random.key(0), batch, device_augment.noise_bank(noise, CLIP),
      settings)
  assert {k: v.shape for k, v in out.items()} == {
      'audio': (16, CLIP), 'label': (16,), 'weight': (16,),
      'time_mask': (16, 9), 'frequency_mask': (16, 40)}
  augmented = np.asarray(out['audio'])
  assert np.abs(augmented).max() <= 1.0
  assert np.all(np.abs(augmented - batch['audio']).max(axis=1) > 0)
  np.testing.assert_array_equal(out['label'], batch['label'])
  assert not np.asarray(out['time_mask']).all()


@pytest.mark.parametrize('bad, fragment', [
    ({'augmentation': None}, 'nothing to augment'),
    ({'spec_augment': SpecAugment(), 'feature_shape': (9, 40)},
     'the device draws the SpecAugment masks'),
    ({'acoustics': acoustics.Acoustics()}, 'room simulation runs on the host'),
])
def test_augment_on_device_refuses_host_work(dataset, bad, fragment):
  with pytest.raises(ValueError, match=fragment):
    pipeline.train_batches(dataset, 4, seed=0, augment_on_device=True,
                           **bad, **kwargs())


# -- The training split on the device (kws_jax.data.device_data) -------------


@pytest.mark.parametrize('with_windows', [False, True])
def test_clips_on_device_gather_what_the_host_reads(dataset, with_windows):
  jax = pytest.importorskip('jax')
  from kws_jax.data import device_data
  window = 3 * CLIP
  options = kwargs(clip_samples=window, foreground_samples=CLIP, num_threads=1)
  if with_windows:
    bank = windows.from_windows(
        np.random.default_rng(0).uniform(-0.5, 0.5, (5, window)),
        ['yes', 'cat', 'no', 'yes', 'up'], sample_rate=16000)
    options.update(windows=bank, window_fraction=0.25)
  clips, readable = device_data.load_clips(dataset, 'training', CLIP,
                                           num_threads=2, progress=False)
  assert clips.samples.dtype == np.int16  # 16-bit files: exact as int16
  assert clips.samples.shape == (len(dataset.split('training')), CLIP)
  assert readable.all()
  read = pipeline.train_batches(dataset, 8, seed=3, num_steps=4,
                                augment_on_device=True, **options)
  indexed = pipeline.train_batches(dataset, 8, seed=3, num_steps=4,
                                   augment_on_device=True,
                                   clips_on_device=readable, **options)
  gather = jax.jit(device_data.gather_audio, static_argnums=3)
  for host, index in zip(read, indexed):
    assert 'audio' not in index
    assert ('window_index' in index) == with_windows
    stores = (clips, device_data.window_store(bank) if with_windows else None)
    gathered = gather({k: np.asarray(v) for k, v in index.items()}, *stores,
                      window)
    assert set(gathered) == set(host)
    for key, value in host.items():
      np.testing.assert_array_equal(np.asarray(gathered[key]), value,
                                    err_msg=key)


def test_unreadable_clips_get_weight_zero_on_the_device_too(dataset):
  readable = np.ones(len(dataset.split('training')), bool)
  readable[::2] = False
  batch = next(pipeline.train_batches(dataset, 8, seed=0, num_threads=1,
                                      augment_on_device=True,
                                      clips_on_device=readable, **kwargs()))
  rows = pipeline.train_example_indices(len(readable), 8, 0, 0)
  np.testing.assert_array_equal(batch['weight'], readable[rows])
  silence = batch['is_silence']
  np.testing.assert_array_equal(batch['clip_index'][silence], -1)
  np.testing.assert_array_equal(batch['clip_index'][~silence], rows[~silence])


def test_clips_on_device_are_refused_without_their_settings(dataset):
  size = len(dataset.split('training'))
  with pytest.raises(ValueError, match='needs augment_on_device=True'):
    pipeline.train_batches(dataset, 8, seed=0, clips_on_device=np.ones(size),
                           **kwargs())
  with pytest.raises(ValueError, match=rf'of shape \(3,\), expected \({size},\)'):
    pipeline.train_batches(dataset, 8, seed=0, augment_on_device=True,
                           clips_on_device=np.ones(3, bool), **kwargs())


@pytest.mark.parametrize('values, dtype', [
    (np.array([[0.5, -1.0], [2**-15, 0.0]]), np.int16),
    (np.array([[0.5, 0.1]]), np.float32),  # 0.1 is no multiple of 2**-15
    (np.array([[1.0, 0.0]]), np.float32),  # 1.0 is 32768: out of int16
])
def test_clip_store_is_int16_only_when_exact(values, dtype):
  from kws_jax.data import device_data
  stored = device_data.store(values.astype(np.float32))
  assert stored.samples.dtype == dtype
  np.testing.assert_array_equal(
      stored.samples.astype(np.float32) * np.float32(stored.scale),
      values.astype(np.float32))
