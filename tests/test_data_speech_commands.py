"""The Speech Commands reader: the hash split rule, label layout, silence/unknown counts, bad input."""

import collections
import hashlib
import math
import os
import random
import warnings

import numpy as np
import pytest

from kws_jax.data import audio, speech_commands as sc


def percentage_by_hand(speaker: str) -> float:
  """The rule of TensorFlow's speech_commands example, written out independently."""
  digest = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
  return (digest % 134217728) * 100.0 / 134217727


def split_by_hand(speaker: str, validation: float, testing: float) -> str:
  value = percentage_by_hand(speaker)
  if value < validation:
    return 'validation'
  if value < validation + testing:
    return 'testing'
  return 'training'


def speakers_in(
    split: str, count: int, validation=10.0, testing=10.0
) -> list[str]:
  """The first `count` speaker ids "spk<i>" that hash into `split`."""
  found = [
      f'spk{i}'
      for i in range(5000)
      if split_by_hand(f'spk{i}', validation, testing) == split
  ]
  return found[:count]


def test_which_set_hand_computed_examples():
  # sha1(b"bobby") = 4501c3b033...; mod 2**27 = 126399259; * 100 / (2**27 - 1) = 94.17%.
  assert int(hashlib.sha1(b'bobby').hexdigest(), 16) % 2**27 == 126399259
  assert percentage_by_hand('bobby') == pytest.approx(94.1748, abs=1e-4)
  assert sc.which_set('bobby_nohash_0.wav', 10, 10) == 'training'
  assert sc.which_set('bobby_nohash_0.wav', 95, 0) == 'validation'
  assert sc.which_set('bobby_nohash_0.wav', 90, 5) == 'testing'
  assert sc.which_set('bobby_nohash_0.wav', 90, 4) == 'training'
  for split in sc.SPLITS:
    for speaker in speakers_in(split, 5):
      for name in (
          f'{speaker}_nohash_0.wav',
          f'/data/yes/{speaker}_nohash_7.wav',
          f'no/{speaker}_nohash_x.wav',
      ):
        assert sc.which_set(name, 10, 10) == split


@pytest.mark.parametrize(
    'validation, testing', [(10, 10), (0, 20), (25, 0), (33.3, 33.3)]
)
def test_which_set_matches_hash_rule(validation, testing):
  for i in range(300):
    speaker = f'{i:08x}'
    assert sc.which_set(
        f'up/{speaker}_nohash_{i % 3}.wav', validation, testing
    ) == split_by_hand(speaker, validation, testing)


def make_tree(root, words_speakers: dict) -> list[str]:
  """Writes root/<word>/<speaker>_nohash_<n>.wav for {word: [(speaker, n)]}."""
  paths = []
  for word, names in words_speakers.items():
    for speaker, n in names:
      path = os.path.join(root, word, f'{speaker}_nohash_{n}.wav')
      audio.write_wav(path, np.full(16, 0.1))
      paths.append(path)
  return paths


def balanced_tree(
    root,
    wanted=('yes', 'no'),
    unknown=('cat', 'dog', 'bird'),
    per_split=4,
    repeats=2,
):
  """per_split speakers of each split say every word `repeats` times."""
  speakers = [s for split in sc.SPLITS for s in speakers_in(split, per_split)]
  tree = {
      word: [(s, n) for s in speakers for n in range(repeats)]
      for word in wanted + unknown
  }
  make_tree(root, tree)
  return speakers


@pytest.mark.parametrize(
    'silence, unknown', [(10, 10), (0, 25), (50, 0), (10, 300)]
)
def test_splits_labels_and_counts(tmp_path, silence, unknown):
  balanced_tree(tmp_path)
  dataset = sc.load_speech_commands(
      tmp_path,
      ('yes', 'no'),
      silence_percentage=silence,
      unknown_percentage=unknown,
  )
  assert dataset.labels == ('_silence_', '_unknown_', 'yes', 'no')
  for split in sc.SPLITS:
    examples = dataset.split(split)
    known = [e for e in examples if e.label >= 2]
    assert len(known) == 4 * 2 * 2  # 4 speakers x 2 words x 2 repeats.
    counts = collections.Counter(e.label for e in examples)
    assert counts[sc.SILENCE_INDEX] == math.ceil(len(known) * silence / 100)
    available_unknown = 4 * 3 * 2
    assert counts[sc.UNKNOWN_INDEX] == min(
        math.ceil(len(known) * unknown / 100), available_unknown
    )
    for example in examples:
      if example.path is None:
        assert example.label == sc.SILENCE_INDEX and example.word == '_silence_'
        continue
      speaker = os.path.basename(example.path).split('_nohash_')[0]
      assert split_by_hand(speaker, 10, 10) == split
      assert example.word == os.path.basename(os.path.dirname(example.path))
      expected = {'yes': 2, 'no': 3}.get(example.word, sc.UNKNOWN_INDEX)
      assert example.label == expected


def test_every_file_lands_in_its_hash_split(tmp_path):
  rng = np.random.default_rng(0)
  tree = {
      word: [
          (f'{rng.integers(2**32):08x}', int(rng.integers(3)))
          for _ in range(60)
      ]
      for word in ('yes', 'no')
  }
  paths = make_tree(tmp_path, tree)
  dataset = sc.load_speech_commands(
      tmp_path, ('yes', 'no'), silence_percentage=0, unknown_percentage=0
  )
  assigned = {
      e.path: split for split in sc.SPLITS for e in dataset.split(split)
  }
  assert sorted(assigned) == sorted(paths)
  for path, split in assigned.items():
    assert split == split_by_hand(
        os.path.basename(path).split('_nohash_')[0], 10, 10
    )


def test_order_and_unknown_sample_follow_kws_streaming(tmp_path):
  balanced_tree(
      tmp_path, unknown=('cat', 'dog', 'bird', 'tree', 'wow'), per_split=6
  )
  dataset = sc.load_speech_commands(tmp_path, ('yes', 'no'))
  assert (
      dataset.splits == sc.load_speech_commands(tmp_path, ('yes', 'no')).splits
  )
  # kws_streaming's prepare_data_index over the sorted file list, written out.
  known, unknown = {s: [] for s in sc.SPLITS}, {s: [] for s in sc.SPLITS}
  for word in ('bird', 'cat', 'dog', 'no', 'tree', 'wow', 'yes'):
    for name in sorted(os.listdir(tmp_path / word)):
      split = split_by_hand(name.split('_nohash_')[0], 10, 10)
      (known if word in ('yes', 'no') else unknown)[split].append(
          str(tmp_path / word / name)
      )
  rng = random.Random(59185)
  expected = {}
  for split in ('validation', 'testing', 'training'):
    rng.shuffle(unknown[split])
    size = math.ceil(len(known[split]) * 10 / 100)
    expected[split] = known[split] + [None] * size + unknown[split][:size]
  for split in ('validation', 'testing', 'training'):
    rng.shuffle(expected[split])
    assert [e.path for e in dataset.split(split)] == expected[split]


def test_label_counts(tmp_path):
  balanced_tree(tmp_path)
  dataset = sc.load_speech_commands(
      tmp_path, ('yes', 'no'), silence_percentage=25, unknown_percentage=50
  )
  assert dataset.label_counts('testing') == {
      '_silence_': 4,
      '_unknown_': 8,
      'yes': 8,
      'no': 8,
  }


def test_background_noise_paths(tmp_path):
  balanced_tree(tmp_path)
  assert (
      sc.load_speech_commands(tmp_path, ('yes', 'no')).background_noise_paths
      == ()
  )
  audio.write_wav(tmp_path / '_background_noise_' / 'b.wav', np.zeros(20000))
  audio.write_wav(tmp_path / '_background_noise_' / 'a.wav', np.zeros(20000))
  dataset = sc.load_speech_commands(tmp_path, ('yes', 'no'))
  assert [os.path.basename(p) for p in dataset.background_noise_paths] == [
      'a.wav',
      'b.wav',
  ]
  assert all(
      e.word != '_background_noise_'
      for s in sc.SPLITS
      for e in dataset.split(s)
  )


@pytest.mark.filterwarnings('ignore:split .* has no examples of wanted word')
def test_split_lists(tmp_path):
  speakers = balanced_tree(tmp_path, per_split=3)
  (tmp_path / 'validation_list.txt').write_text(
      f'yes/{speakers[0]}_nohash_0.wav\n'
  )
  (tmp_path / 'testing_list.txt').write_text(
      f'no/{speakers[1]}_nohash_1.wav\ncat/{speakers[1]}_nohash_0.wav\n'
  )
  dataset = sc.load_speech_commands(
      tmp_path,
      ('yes', 'no'),
      use_split_lists=True,
      silence_percentage=0,
      unknown_percentage=100,
  )
  assert [
      os.path.relpath(e.path, tmp_path) for e in dataset.split('validation')
  ] == [f'yes/{speakers[0]}_nohash_0.wav']
  assert sorted(
      os.path.relpath(e.path, tmp_path) for e in dataset.split('testing')
  ) == [f'cat/{speakers[1]}_nohash_0.wav', f'no/{speakers[1]}_nohash_1.wav']


def make_presplit(root, words=('yes', 'no', 'up')):
  for split in sc.SPLITS:
    make_tree(
        os.path.join(root, split),
        {word: [(f'{split}{i}', 0) for i in range(3)] for word in words},
    )


def test_presplit_folders(tmp_path):
  make_presplit(tmp_path)
  dataset = sc.load_speech_commands(
      tmp_path, ('up', 'yes', 'no'), split_data=False
  )
  assert dataset.labels == ('up', 'yes', 'no')
  for split in sc.SPLITS:
    examples = dataset.split(split)
    assert len(examples) == 9
    assert all(
        e.path.startswith(os.path.join(str(tmp_path), split)) for e in examples
    )
    assert {(e.word, e.label) for e in examples} == {
        ('up', 0),
        ('yes', 1),
        ('no', 2),
    }


def test_presplit_errors(tmp_path):
  make_presplit(tmp_path)
  with pytest.raises(ValueError, match="'up'.*not in wanted_words"):
    sc.load_speech_commands(tmp_path, ('yes', 'no'), split_data=False)
  with pytest.raises(
      ValueError, match="wanted word 'left': .*testing.left has no .wav files"
  ):
    sc.load_speech_commands(
        tmp_path, ('yes', 'no', 'up', 'left'), split_data=False
    )
  os.rename(tmp_path / 'validation', tmp_path / 'valid')
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'validation')):
    sc.load_speech_commands(tmp_path, ('yes', 'no', 'up'), split_data=False)


def test_missing_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'absent')):
    sc.load_speech_commands(tmp_path / 'absent')


def test_no_wavs(tmp_path):
  (tmp_path / 'yes').mkdir()
  with pytest.raises(
      ValueError, match='no readable .wav files found at ' + str(tmp_path)
  ):
    sc.load_speech_commands(tmp_path, ('yes',))


def test_wanted_word_without_clips(tmp_path):
  balanced_tree(tmp_path)
  (tmp_path / 'left').mkdir()
  with pytest.raises(
      ValueError,
      match=f"wanted word 'left': {tmp_path / 'left'} has no .wav files",
  ) as raised:
    sc.load_speech_commands(tmp_path, ('yes', 'left'))
  assert 'words found: bird, cat, dog, no, yes' in str(raised.value)


def test_empty_split_is_an_error(tmp_path):
  make_tree(tmp_path, {'yes': [(s, 0) for s in speakers_in('training', 3)]})
  with pytest.raises(
      ValueError, match="split 'validation'.*no examples of the wanted words"
  ):
    sc.load_speech_commands(tmp_path, ('yes',))
  # Without a validation split requested, an empty one is fine.
  dataset = sc.load_speech_commands(
      tmp_path, ('yes',), validation_percentage=0, testing_percentage=0
  )
  assert (
      len(dataset.split('training')) == 3 + 1
      and dataset.split('validation') == ()
  )


def test_a_class_missing_from_a_split_warns(tmp_path):
  train, test, valid = (
      speakers_in(split, 2) for split in ('training', 'testing', 'validation')
  )
  make_tree(
      tmp_path,
      {
          'yes': [(s, 0) for s in train + test + valid],
          'no': [(s, 0) for s in train + valid],
      },
  )
  with pytest.warns(
      UserWarning, match="split 'testing'.*wanted word\\(s\\) no"
  ):
    sc.load_speech_commands(tmp_path, ('yes', 'no'))


def test_corrupt_files_are_skipped_with_one_warning(tmp_path):
  balanced_tree(tmp_path)
  bad = [
      tmp_path / 'yes' / 'zzz1_nohash_0.wav',
      tmp_path / 'cat' / 'zzz2_nohash_0.wav',
      tmp_path / 'no' / 'zzz3_nohash_0.wav',
  ]
  bad[0].write_bytes(b'')
  bad[1].write_bytes(b'not audio at all, sorry')
  audio.write_wav(bad[2], np.zeros(100))
  bad[2].write_bytes(bad[2].read_bytes()[:-20])  # Truncated.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    dataset = sc.load_speech_commands(tmp_path, ('yes', 'no'))
  assert len(caught) == 1
  message = str(caught[0].message)
  assert message.startswith('skipped 3 unreadable WAV file(s)')
  for path in bad:
    assert str(path) in message
  assert sorted(dataset.skipped_files) == sorted(map(str, bad))
  indexed = {e.path for s in sc.SPLITS for e in dataset.split(s)}
  assert not indexed & set(map(str, bad))


def test_wanted_word_with_only_corrupt_files(tmp_path):
  balanced_tree(tmp_path)
  (tmp_path / 'left').mkdir()
  (tmp_path / 'left' / 'a_nohash_0.wav').write_bytes(b'garbage')
  with pytest.warns(UserWarning, match='skipped 1'), pytest.raises(
      ValueError,
      match=f"wanted word 'left': {tmp_path / 'left'} has only unreadable",
  ):
    sc.load_speech_commands(tmp_path, ('yes', 'left'))


@pytest.mark.parametrize(
    'kwargs, message',
    [
        ({'wanted_words': ('yes', 'yes')}, 'distinct'),
        (
            {'wanted_words': ('yes', '_silence_')},
            "must not contain '_silence_'",
        ),
        ({'silence_percentage': -5}, 'silence_percentage=-5'),
        ({'testing_percentage': -1}, 'testing_percentage=-1'),
        (
            {'validation_percentage': 60, 'testing_percentage': 50},
            'add up to at most 100',
        ),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
  balanced_tree(tmp_path)
  kwargs = {'wanted_words': ('yes', 'no'), **kwargs}
  with pytest.raises(ValueError, match=message):
    sc.load_speech_commands(tmp_path, **kwargs)


def test_unknown_split_name(tmp_path):
  balanced_tree(tmp_path)
  with pytest.raises(ValueError, match="unknown split 'train'"):
    sc.load_speech_commands(tmp_path, ('yes', 'no')).split('train')
