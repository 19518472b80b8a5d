"""kws_jax.data.combine: several datasets as one, splits unchanged."""

import hashlib
import os
import warnings

import numpy as np
import pytest

from kws_jax.data import audio, combine, speech_commands as sc

WORDS = ('yes', 'no')


def make_dataset(root, speakers, *, noise=None, lists=False):
  """Two clips per speaker and word; optional noise bytes and split lists."""
  rng = np.random.default_rng(len(str(root)))
  for word in WORDS + ('tree',):
    os.makedirs(root / word, exist_ok=True)
    for speaker in speakers:
      for n in range(2):
        audio.write_wav(root / word / f'{speaker}_nohash_{n}.wav',
                        rng.uniform(-0.5, 0.5, 1600).astype(np.float32))
  if noise is not None:
    os.makedirs(root / sc.BACKGROUND_NOISE_DIR, exist_ok=True)
    audio.write_wav(root / sc.BACKGROUND_NOISE_DIR / 'white.wav', noise)
  if lists:
    (root / 'validation_list.txt').write_text(f'yes/{speakers[0]}_nohash_0.wav\n')
    (root / 'testing_list.txt').write_text(f'no/{speakers[1]}_nohash_1.wav\n')
  return root


def splits_of(data_dir, **kwargs):
  with warnings.catch_warnings():  # splits without one of the words
    warnings.simplefilter('ignore', UserWarning)
    data = sc.load_speech_commands(data_dir, WORDS, silence_percentage=0,
                                   unknown_percentage=100,
                                   validation_percentage=30,
                                   testing_percentage=30, **kwargs)
  return {split: sorted(os.path.basename(e.path) + e.word for e in examples)
          for split, examples in data.splits.items()}


def speaker_ids(prefix, count):
  return [prefix + hashlib.sha1(f'{prefix}{i}'.encode()).hexdigest()[
      :8 - len(prefix)] for i in range(count)]


SPEAKERS_A = speaker_ids('', 12)  # eSpeak-like ids
SPEAKERS_B = speaker_ids('k', 12)  # Kokoro-like ids


def test_combined_dataset_keeps_every_clip_in_its_split(tmp_path):
  noise = np.linspace(-0.1, 0.1, 800, dtype=np.float32)
  a = make_dataset(tmp_path / 'a', SPEAKERS_A, noise=noise)
  b = make_dataset(tmp_path / 'b', SPEAKERS_B, noise=noise[::-1].copy())
  counts = combine.combine(tmp_path / 'ab', [a, b])
  assert counts == {str(a): 72, str(b): 72}
  combined = splits_of(tmp_path / 'ab')
  for split in sc.SPLITS:
    assert combined[split] == sorted(splits_of(a)[split] + splits_of(b)[split])
  assert sum(map(len, combined.values())) == 144
  # Noise files of one name but other bytes are both kept.
  noise_dir = tmp_path / 'ab' / sc.BACKGROUND_NOISE_DIR
  assert sorted(os.listdir(noise_dir)) == ['b_white.wav', 'white.wav']
  link = noise_dir / 'white.wav'
  assert os.path.islink(link) and not os.path.isabs(os.readlink(link))
  # A rerun is a no-op; a grown source gets its new clip linked.
  audio.write_wav(b / 'yes' / 'kfffffff_nohash_0.wav', noise)
  assert combine.combine(tmp_path / 'ab', [a, b])[str(b)] == 73
  assert os.path.exists(tmp_path / 'ab' / 'yes' / 'kfffffff_nohash_0.wav')
  # Moved together with its sources, the combination stays valid.
  before = splits_of(tmp_path / 'ab')
  os.makedirs(tmp_path / 'moved')
  for name in ('a', 'b', 'ab'):
    os.rename(tmp_path / name, tmp_path / 'moved' / name)
  moved = tmp_path / 'moved'
  assert combine.combine(moved / 'ab', [moved / 'a', moved / 'b'])[
      str(moved / 'b')] == 73
  assert splits_of(moved / 'ab') == before


def test_equal_noise_is_linked_once_and_split_lists_are_merged(tmp_path):
  noise = np.linspace(-0.1, 0.1, 800, dtype=np.float32)
  a = make_dataset(tmp_path / 'a', SPEAKERS_A, noise=noise, lists=True)
  b = make_dataset(tmp_path / 'b', SPEAKERS_B, noise=noise, lists=True)
  combine.combine(tmp_path / 'ab', [a, b])
  assert os.listdir(tmp_path / 'ab' / sc.BACKGROUND_NOISE_DIR) == ['white.wav']
  assert (tmp_path / 'ab' / 'validation_list.txt').read_text().split() == [
      f'yes/{SPEAKERS_A[0]}_nohash_0.wav', f'yes/{SPEAKERS_B[0]}_nohash_0.wav']
  data = splits_of(tmp_path / 'ab', use_split_lists=True)
  assert data['validation'] == [f'{SPEAKERS_A[0]}_nohash_0.wavyes',
                                f'{SPEAKERS_B[0]}_nohash_0.wavyes']


def test_combine_refuses_what_would_mix_or_lose_clips(tmp_path):
  a = make_dataset(tmp_path / 'a', SPEAKERS_A)
  same_names = make_dataset(tmp_path / 'c', SPEAKERS_A)
  with pytest.raises(ValueError, match='two sources hold the same file'):
    combine.combine(tmp_path / 'ac', [a, same_names])
  with_lists = make_dataset(tmp_path / 'l', SPEAKERS_B, lists=True)
  with pytest.raises(ValueError, match='would all become training data'):
    combine.combine(tmp_path / 'al', [a, with_lists])
  with pytest.raises(ValueError, match='two or more distinct'):
    combine.combine(tmp_path / 'aa', [a, a])
  with pytest.raises(FileNotFoundError, match='missing does not exist'):
    combine.combine(tmp_path / 'am', [a, tmp_path / 'missing'])
  b = make_dataset(tmp_path / 'b', SPEAKERS_B)
  combine.combine(tmp_path / 'ab', [a, b])
  other = make_dataset(tmp_path / 'o', speaker_ids('o', 4))
  with pytest.raises(ValueError, match='combines .* not'):
    combine.combine(tmp_path / 'ab', [a, other])
  (tmp_path / 'busy').mkdir()
  (tmp_path / 'busy' / 'x').write_text('x')
  with pytest.raises(ValueError, match='was not made by'):
    combine.combine(tmp_path / 'busy', [a, b])
  # A word named "training" is a word, not a split.
  for name in ('training', 'testing'):
    os.makedirs(a / name)
    audio.write_wav(a / name / f'{SPEAKERS_A[0]}_nohash_0.wav',
                    np.zeros(1600, np.float32))
  assert combine.combine(tmp_path / 'a_words', [a, b])[str(a)] == 74
  os.makedirs(tmp_path / 'split' / 'training' / 'yes')
  with pytest.raises(ValueError, match='pooled layout'):
    combine.combine(tmp_path / 'as', [a, tmp_path / 'split'])


def test_combine_cli_prints_counts_and_refuses_cleanly(tmp_path, capsys):
  a = make_dataset(tmp_path / 'a', SPEAKERS_A)
  b = make_dataset(tmp_path / 'b', SPEAKERS_B)
  combine.main(['--out', str(tmp_path / 'ab'), str(a), str(b)])
  assert capsys.readouterr().out.splitlines()[-1].endswith(': 144 clips')
  with pytest.raises(SystemExit, match='error: sources .* two or more'):
    combine.main(['--out', str(tmp_path / 'x'), str(a)])
