"""The Speech Commands reader, with kws_streaming's labels and splits.

Layout (v0.01, v0.02, and the synthetic sets of kws_jax.data.synth):

    data_dir/<word>/<speaker>_nohash_<n>.wav
    data_dir/_background_noise_/*.wav        (optional; long noise recordings)

Labels are `_silence_` (0), `_unknown_` (1), then `wanted_words` (2...). Each
file goes to a split by `which_set`, the stable hash rule of TensorFlow's
speech_commands example that kws_streaming uses (so the train/validation/test
files are those of the papers); then each split gets silence examples and a
sample of the unknown words, each ceil(percentage * wanted-word count / 100).

With `split_data=False` (kws_streaming's 35-label runs), the splits are read
from
pre-split folders instead, the labels are exactly `wanted_words` and every
directory must be a wanted word:

    data_dir/{training,validation,testing}/<word>/*.wav

Faithful to kws_streaming's input_data.py: the split rule, label indices,
silence/unknown counts, the seeded choice (random.Random(59185)) and order of
unknown examples, over the sorted file list (TensorFlow globs in directory
order, so the unknown sample itself can differ from a TensorFlow run on another
machine; the split of every file cannot).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import glob
import hashlib
import math
import os
import random
import re
import warnings
from collections.abc import Mapping, Sequence

from kws_jax.data import audio

SILENCE_LABEL = '_silence_'
UNKNOWN_LABEL = '_unknown_'
SILENCE_INDEX = 0
UNKNOWN_INDEX = 1
BACKGROUND_NOISE_DIR = '_background_noise_'
DEFAULT_WANTED_WORDS = (
    'yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go'
)
SPLITS = ('training', 'validation', 'testing')
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M; the modulus of the split hash.
UNKNOWN_SAMPLE_SEED = 59185  # kws_streaming's RANDOM_SEED.
_CORRUPT_FILES_SHOWN = 20


def which_set(
    filename: str, validation_percentage: float, testing_percentage: float
) -> str:
  """The split of a file: "training", "validation" or "testing".

  The SHA-1 of the base name with everything from "_nohash_" on removed, read
  as a hex integer, modulo 2**27, scaled by 100 / (2**27 - 1), is compared with
  validation_percentage, then with validation + testing percentage. So all
  clips of one speaker ("<speaker>_nohash_<n>.wav") share a split, and a
  file's split never changes as files are added.
  """
  base_name = os.path.basename(filename)
  hash_name = re.sub(r'_nohash_.*$', '', base_name)
  hash_value = int(hashlib.sha1(hash_name.encode('utf-8')).hexdigest(), 16)
  percentage = (hash_value % (MAX_NUM_WAVS_PER_CLASS + 1)) * (
      100.0 / MAX_NUM_WAVS_PER_CLASS
  )
  if percentage < validation_percentage:
    return 'validation'
  if percentage < testing_percentage + validation_percentage:
    return 'testing'
  return 'training'


@dataclasses.dataclass(frozen=True)
class Example:
  """One row of a split.

  Attributes:
    path: The WAV file, or None for a silence example (no foreground audio).
    label: Index into SpeechCommands.labels.
    word: The file's directory name (lower case), or SILENCE_LABEL.
  """

  path: str | None
  label: int
  word: str


@dataclasses.dataclass(frozen=True)
class SpeechCommands:
  """An indexed dataset: labels, the three splits, the background noise files.

  Attributes:
    data_dir: The root it was read from.
    labels: Label names by index, e.g. ("_silence_", "_unknown_", "yes", ...).
    splits: "training"/"validation"/"testing" -> examples, in kws_streaming's
      (seeded, shuffled) order.
    background_noise_paths: Sorted WAV files of `_background_noise_`, or ().
    skipped_files: Files left out because they are not readable audio.
  """

  data_dir: str
  labels: tuple[str, ...]
  splits: Mapping[str, tuple[Example, ...]]
  background_noise_paths: tuple[str, ...]
  skipped_files: tuple[str, ...] = ()

  def split(self, name: str) -> tuple[Example, ...]:
    if name not in self.splits:
      raise ValueError(f'unknown split {name!r}, expected one of {SPLITS}')
    return self.splits[name]

  def label_counts(self, name: str) -> dict[str, int]:
    """Examples per label name in split `name`."""
    counts = collections.Counter(example.label for example in self.split(name))
    return {
        label: counts.get(index, 0) for index, label in enumerate(self.labels)
    }


def _find_wavs(directory: str) -> dict[str, list[str]]:
  """Sorted "<directory>/<word>/*.wav" by lower-cased word, noise excluded."""
  by_word: dict[str, list[str]] = collections.defaultdict(list)
  for path in sorted(
      glob.glob(os.path.join(glob.escape(directory), '*', '*.wav'))
  ):
    word = os.path.basename(os.path.dirname(path)).lower()
    if word != BACKGROUND_NOISE_DIR:
      by_word[word].append(path)
  return by_word


def _drop_unreadable(by_word: dict[str, list[str]], data_dir: str,
                     sample_rate: int | None = None) -> list[str]:
  """Removes files that fail audio.check_wav; returns them, sorted.

  Raises:
    ValueError: ``sample_rate`` is given and readable clips have another
      rate (they would be cut to the model's sample count, not resampled).
  """
  paths = [path for word_paths in by_word.values() for path in word_paths]

  def rate_of(path: str) -> int | None:
    try:
      return audio.check_wav(path).sample_rate
    except (OSError, ValueError):
      return None

  # Header reads are I/O bound: threads overlap them.
  with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
    rates = dict(zip(paths, pool.map(rate_of, paths, chunksize=256)))
  bad = {path for path, rate in rates.items() if rate is None}
  if sample_rate is not None:
    _check_sample_rates(data_dir, {p: r for p, r in rates.items()
                                   if r is not None}, sample_rate)
  for word in by_word:
    by_word[word] = [path for path in by_word[word] if path not in bad]
  return sorted(bad)


def _check_sample_rates(data_dir: str, rates: dict[str, int],
                        sample_rate: int) -> None:
  other = sorted(path for path, rate in rates.items() if rate != sample_rate)
  if not other:
    return
  found = collections.Counter(rates[path] for path in other)
  raise ValueError(
      f'{len(other)} of {len(rates)} clips in {data_dir} are not at '
      f'data.sample_rate={sample_rate} Hz (found '
      + ', '.join(f'{rate} Hz: {count}' for rate, count in sorted(
          found.items())) + f'; e.g. {other[0]}); resample the dataset or set '
      'data.sample_rate to its rate')


def _warn_skipped(skipped: Sequence[str]) -> None:
  if not skipped:
    return
  shown = '\n  '.join(skipped[:_CORRUPT_FILES_SHOWN])
  more = len(skipped) - _CORRUPT_FILES_SHOWN
  tail = f'\n  ... and {more} more' if more > 0 else ''
  warnings.warn(
      f'skipped {len(skipped)} unreadable WAV file(s) (empty, truncated, '
      'not audio or with NaN samples; see kws_jax.data.audio.check_wav):'
      f'\n  {shown}{tail}',
      stacklevel=4,
  )


def _check_wanted_words(
    directory: str,
    by_word: Mapping[str, list[str]],
    wanted_words: Sequence[str],
    skipped: Sequence[str],
) -> None:
  if not any(by_word.values()):
    raise ValueError(
        'no readable .wav files found at '
        + os.path.join(directory, '*', '*.wav')
    )
  for word in wanted_words:
    if not by_word.get(word):
      folder = os.path.join(directory, word)
      unreadable = any(os.path.dirname(path) == folder for path in skipped)
      reason = (
          'has only unreadable .wav files'
          if unreadable
          else 'has no .wav files'
      )
      found = ', '.join(sorted(w for w, paths in by_word.items() if paths))
      raise ValueError(
          f'wanted word {word!r}: {folder} {reason}; words found: {found}'
      )


def _background_noise_paths(data_dir: str) -> tuple[str, ...]:
  directory = os.path.join(data_dir, BACKGROUND_NOISE_DIR)
  if not os.path.isdir(directory):
    return ()
  paths = tuple(
      sorted(glob.glob(os.path.join(glob.escape(directory), '*.wav')))
  )
  if not paths:
    raise ValueError(
        f'{directory} exists but holds no .wav files; remove it or add '
        'noise files'
    )
  return paths


def _read_split_lists(data_dir: str) -> dict[str, str]:
  """validation_list.txt / testing_list.txt -> {normalized path: split}."""
  assignment = {}
  for split, name in (
      ('validation', 'validation_list.txt'),
      ('testing', 'testing_list.txt'),
  ):
    list_path = os.path.join(data_dir, name)
    if not os.path.isfile(list_path):
      raise FileNotFoundError(
          f'use_split_lists=True but {list_path} does not exist'
      )
    with open(list_path, encoding='utf-8') as file:
      for line in file:
        if line.strip():
          assignment[os.path.normpath(os.path.join(data_dir, line.strip()))] = (
              split
          )
  return assignment


def load_speech_commands(
    data_dir: str | os.PathLike,
    wanted_words: Sequence[str] = DEFAULT_WANTED_WORDS,
    *,
    silence_percentage: float = 10.0,
    unknown_percentage: float = 10.0,
    validation_percentage: float = 10.0,
    testing_percentage: float = 10.0,
    split_data: bool = True,
    use_split_lists: bool = False,
    check_files: bool = True,
    sample_rate: int | None = None,
) -> SpeechCommands:
  """Indexes a Speech Commands-style directory into labelled splits.

  Args:
    data_dir: The dataset root (see the module docstring for the layout).
    wanted_words: The keywords; labels 2.. (or 0.. with split_data=False).
    silence_percentage: Silence examples per split, as a percentage of the
      split's wanted-word examples (rounded up).
    unknown_percentage: Likewise for examples of the other words.
    validation_percentage, testing_percentage: Split sizes for `which_set`.
    split_data: True: one pool split by hash; False: read training/,
      validation/ and testing/ folders (percentages are then ignored).
    use_split_lists: Assign splits from the dataset's validation_list.txt and
      testing_list.txt instead of the hash rule (kws_streaming ignores them;
      for v0.02 they agree with the hash rule).
    check_files: Read every WAV header and leave out unreadable files, with
      one warning that lists them.
    sample_rate: With check_files, the rate every clip must have (the
      config's ``data.sample_rate``); None: not checked.

  Returns:
    A SpeechCommands index; no audio is loaded.

  Raises:
    FileNotFoundError: data_dir (or a split folder) does not exist.
    ValueError: no audio, a wanted word without readable clips, an empty
      split, clips at another rate than ``sample_rate``, or
      (split_data=False) a word folder that is not wanted.
  """
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(
        f'Speech Commands directory {data_dir} does not exist'
    )
  wanted_words = tuple(word.lower() for word in wanted_words)
  if len(set(wanted_words)) != len(wanted_words) or not wanted_words:
    raise ValueError(
        f'wanted_words={wanted_words}: expected distinct, non-empty words'
    )
  if split_data:
    return _load_pooled(
        data_dir,
        wanted_words,
        silence_percentage=silence_percentage,
        unknown_percentage=unknown_percentage,
        validation_percentage=validation_percentage,
        testing_percentage=testing_percentage,
        use_split_lists=use_split_lists,
        check_files=check_files,
        sample_rate=sample_rate,
    )
  return _load_presplit(data_dir, wanted_words, check_files, sample_rate)


def _load_pooled(
    data_dir: str,
    wanted_words: tuple[str, ...],
    *,
    silence_percentage: float,
    unknown_percentage: float,
    validation_percentage: float,
    testing_percentage: float,
    use_split_lists: bool,
    check_files: bool,
    sample_rate: int | None,
) -> SpeechCommands:
  """split_data=True: one pool of word folders, split by which_set."""
  for name, value in (
      ('silence_percentage', silence_percentage),
      ('unknown_percentage', unknown_percentage),
  ):
    if value < 0:
      raise ValueError(f'{name}={value}, expected a percentage >= 0')
  if not (
      0 <= validation_percentage
      and 0 <= testing_percentage
      and validation_percentage + testing_percentage <= 100
  ):
    raise ValueError(
        f'validation_percentage={validation_percentage} and '
        f'testing_percentage={testing_percentage}: expected percentages >= 0 '
        'that add up to at most 100'
    )
  for reserved in (SILENCE_LABEL, UNKNOWN_LABEL):
    if reserved in wanted_words:
      raise ValueError(
          f'wanted_words must not contain {reserved!r}; it is added as label'
      )
  by_word = _find_wavs(data_dir)
  skipped = (_drop_unreadable(by_word, data_dir, sample_rate) if check_files
             else [])
  _warn_skipped(skipped)
  _check_wanted_words(data_dir, by_word, wanted_words, skipped)
  list_splits = _read_split_lists(data_dir) if use_split_lists else None

  word_index = {word: index + 2 for index, word in enumerate(wanted_words)}
  known: dict[str, list[Example]] = {split: [] for split in SPLITS}
  unknown: dict[str, list[Example]] = {split: [] for split in SPLITS}
  for word in sorted(by_word):
    for path in by_word[word]:
      if list_splits is not None:
        split = list_splits.get(os.path.normpath(path), 'training')
      else:
        split = which_set(path, validation_percentage, testing_percentage)
      if word in word_index:
        known[split].append(Example(path, word_index[word], word))
      else:
        unknown[split].append(Example(path, UNKNOWN_INDEX, word))

  # The same sequence of draws as kws_streaming: per split (validation, testing,
  # training) shuffle the unknowns, then shuffle each split.
  rng = random.Random(UNKNOWN_SAMPLE_SEED)
  splits = {}
  requested = {
      'validation': validation_percentage > 0 or use_split_lists,
      'testing': testing_percentage > 0 or use_split_lists,
      'training': True,
  }
  for split in ('validation', 'testing', 'training'):
    num_known = len(known[split])
    if num_known == 0 and requested[split]:
      raise ValueError(
          f'split {split!r} of {data_dir} has no examples of the wanted words '
          f'(validation_percentage={validation_percentage}, '
          f'testing_percentage={testing_percentage}); add clips from more '
          'speakers or change the percentages'
      )
    silence = [Example(None, SILENCE_INDEX, SILENCE_LABEL)] * math.ceil(
        num_known * silence_percentage / 100
    )
    rng.shuffle(unknown[split])
    num_unknown = math.ceil(num_known * unknown_percentage / 100)
    splits[split] = known[split] + silence + unknown[split][:num_unknown]
  for split in ('validation', 'testing', 'training'):
    rng.shuffle(splits[split])
    _warn_missing_words(data_dir, split, splits[split], word_index)
  return SpeechCommands(
      data_dir=data_dir,
      labels=(SILENCE_LABEL, UNKNOWN_LABEL) + wanted_words,
      splits={split: tuple(splits[split]) for split in SPLITS},
      background_noise_paths=_background_noise_paths(data_dir),
      skipped_files=tuple(skipped),
  )


def _warn_missing_words(
    data_dir: str,
    split: str,
    examples: Sequence[Example],
    word_index: Mapping[str, int],
) -> None:
  """A class must never disappear silently from a non-empty split."""
  present = {example.label for example in examples}
  missing = [word for word, label in word_index.items() if label not in present]
  if examples and missing:
    warnings.warn(
        f'split {split!r} of {data_dir} has no examples of wanted word(s) '
        + ', '.join(missing),
        stacklevel=4,
    )


def _load_presplit(
    data_dir: str, wanted_words: tuple[str, ...], check_files: bool,
    sample_rate: int | None = None
) -> SpeechCommands:
  word_index = {word: index for index, word in enumerate(wanted_words)}
  rng = random.Random(UNKNOWN_SAMPLE_SEED)
  splits = {}
  all_skipped = []
  for split in ('testing', 'training', 'validation'):
    directory = os.path.join(data_dir, split)
    if not os.path.isdir(directory):
      raise FileNotFoundError(
          f'split_data=False needs the folder {directory}, which does not exist'
      )
    by_word = _find_wavs(directory)
    skipped = (_drop_unreadable(by_word, directory, sample_rate)
               if check_files else [])
    all_skipped += skipped
    _check_wanted_words(directory, by_word, wanted_words, skipped)
    unexpected = sorted(word for word in by_word if word not in word_index)
    if unexpected:
      raise ValueError(
          f"{directory} has word folder(s) {', '.join(map(repr, unexpected))}"
          ' that are not in wanted_words; with split_data=False every folder '
          'must be a wanted word'
      )
    splits[split] = [
        Example(path, word_index[word], word)
        for word in sorted(by_word)
        for path in by_word[word]
    ]
  _warn_skipped(sorted(all_skipped))
  for split in ('validation', 'testing', 'training'):
    rng.shuffle(splits[split])
  return SpeechCommands(
      data_dir=data_dir,
      labels=wanted_words,
      splits={split: tuple(splits[split]) for split in SPLITS},
      background_noise_paths=_background_noise_paths(data_dir),
      skipped_files=tuple(sorted(all_skipped)),
  )
