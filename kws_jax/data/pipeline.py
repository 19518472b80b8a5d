"""Fixed-shape numpy batches for training and evaluation, prefetched by threads.

A batch is a dict:
  "audio":  float32 [B, clip_samples], in [-1, 1];
  "label":  int32 [B], indices into speech_commands.SpeechCommands.labels;
  "weight": float32 [B], 1 for real rows, 0 for padding rows (and for a file
            that turned out unreadable while loading; it is skipped with a
            warning instead of ending the run);
and, when train_batches gets `spec_augment` and `feature_shape`:
  "time_mask": float32 [B, T], "frequency_mask": float32 [B, F] (see augment).

Training batches are a pure function of (dataset, seed, step): row r of step s
is example perm_e[(s * B + r) mod N] of epoch e = (s * B + r) // N, with perm_e
a permutation drawn from (seed, e), and its augmentation is drawn from
(seed, s). So `train_batches(..., start_step=k)` yields exactly what an
uninterrupted run yields from step k on, whatever the number of threads.
(kws_streaming samples training rows with replacement; epochs of permutations
visit every example equally often.)

Clips longer than the files: with `foreground_samples` < `clip_samples`, each
file is fit to `foreground_samples` (cropped or zero-padded at its end, as
TF's decode_wav does) and placed at the end of the clip, after zeros (in
training, after the background noise the augmentation mixes over the whole
clip). A model that needs context before a word (the speech embedding heads
see 2 s) thus sees the word end where its window ends, as in a stream.

Window banks (kws_jax.data.windows): with `windows` and `window_fraction`,
the last round(B * window_fraction) rows of each training batch are windows
of the bank, drawn from (seed, step) and labelled with their word (a word
that is not a label trains _unknown_); they are clip-long already and not
augmented (they carry the stream's own noise). The other rows come from the
dataset as above, with B reduced accordingly.

Real-world acoustics (kws_jax.data.acoustics): with `acoustics`, the
dataset rows go through kws_streaming's stretch, volume and time shift as
above but not its background mix; `acoustics` then puts them in a room of
`rooms`, adds the background noise recordings at an SNR, and colours them
with a microphone or a telephone line, drawn from (seed, step) on a stream
of their own.

Augmentation on the device (kws_jax.data.device_augment): with
`augment_on_device`, the host does not augment: it reads and places the
files as without augmentation, and the batch also holds "is_silence" bool
[B] and "augment" bool [B] (False for window-bank rows), from which the
jitted train step augments "audio" and draws SpecAugment masks itself.
With the training split on the device as well (kws_jax.data.device_data,
`clips_on_device`), no file is read per step: rows carry "clip_index" int32
[B] (the example's index in the split, -1 for silence and window rows) and,
with a window bank, "window_index" int32 [B] (-1 for dataset rows) instead
of "audio", which the train step gathers.

Evaluation batches cover a split exactly once, in order, never augmented; the
last one is padded with weight-0 rows, so that
    sum(weight * correct) / sum(weight)
over the batches is the split's accuracy with one fixed batch shape. As in
kws_streaming, evaluation silence is all zeros (background noise is a training
augmentation).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from kws_jax.data import acoustics as acoustics_lib
from kws_jax.data import audio
from kws_jax.data import augment
from kws_jax.data import speech_commands
from kws_jax.data import windows as windows_lib

Batch = dict[str, np.ndarray]

DEFAULT_AUGMENTATION = augment.AudioAugmentation()  # kws_streaming's defaults.
# Independent random streams derived from the seed.
(_EPOCH_STREAM, _AUGMENT_STREAM, _SPEC_AUGMENT_STREAM, _WINDOW_STREAM,
 _ACOUSTICS_STREAM) = range(5)


def default_num_threads() -> int:
  """Loader threads: all cores the process may use."""
  return max(1, len(os.sched_getaffinity(0)))


def load_background_noise(
    dataset: speech_commands.SpeechCommands,
    sample_rate: int = audio.SAMPLE_RATE,
    clip_samples: int = audio.CLIP_SAMPLES,
) -> list[np.ndarray]:
  """Reads the background noise files: float32 [M_i] with M_i > clip_samples.

  Raises:
    ValueError: a recording is not longer than one clip (names the file).
  """
  noise = [
      audio.read_wav(path, sample_rate)
      for path in dataset.background_noise_paths
  ]
  for path, recording in zip(dataset.background_noise_paths, noise):
    if len(recording) <= clip_samples:
      raise ValueError(
          f'{path}: background noise of {len(recording)} samples, expected '
          f'more than one clip ({clip_samples} samples at {sample_rate} Hz)'
      )
  return noise


def _load_examples(
    examples: Sequence[speech_commands.Example],
    clip_samples: int,
    sample_rate: int,
    foreground_samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Reads clips: (clips float32 [B, clip_samples], readable bool [B]).

  Each file is fit to `foreground_samples` (default: the clip) and placed at
  the end of its row. Silence rows are zeros. An unreadable file gives a zero
  row, False, and a warning naming the file.
  """
  foreground = _foreground(clip_samples, foreground_samples)
  clips = np.zeros((len(examples), clip_samples), np.float32)
  readable = np.ones(len(examples), bool)
  for row, example in enumerate(examples):
    if example.path is None:
      continue
    try:
      clips[row, clip_samples - foreground:] = audio.read_clip(
          example.path, foreground, sample_rate)
    except (OSError, ValueError) as error:
      readable[row] = False
      warnings.warn(
          f'skipping unreadable example {example.path}: {error}', stacklevel=2
      )
  return clips, readable


def _foreground(clip_samples: int, foreground_samples: int | None) -> int:
  if foreground_samples is None:
    return clip_samples
  if not 0 < foreground_samples <= clip_samples:
    raise ValueError(
        f'foreground_samples={foreground_samples}, expected 1 to '
        f'clip_samples={clip_samples}'
    )
  return foreground_samples


@functools.lru_cache(maxsize=8)
def _epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
  return np.random.default_rng([seed, _EPOCH_STREAM, epoch]).permutation(size)


def train_example_indices(
    num_examples: int, batch_size: int, seed: int, step: int
) -> np.ndarray:
  """Indices into the training split of the rows of step `step`: int [B]."""
  positions = step * batch_size + np.arange(batch_size)
  epochs, offsets = np.divmod(positions, num_examples)
  return np.array(
      [
          _epoch_permutation(seed, int(epoch), num_examples)[offset]
          for epoch, offset in zip(epochs, offsets)
      ]
  )


def train_batch(
    dataset: speech_commands.SpeechCommands,
    noise: Sequence[np.ndarray],
    step: int,
    *,
    batch_size: int,
    seed: int,
    augmentation: augment.AudioAugmentation | None = DEFAULT_AUGMENTATION,
    spec_augment: augment.SpecAugment | None = None,
    feature_shape: tuple[int, int] | None = None,
    clip_samples: int = audio.CLIP_SAMPLES,
    sample_rate: int = audio.SAMPLE_RATE,
    foreground_samples: int | None = None,
    windows: windows_lib.WindowBank | None = None,
    window_fraction: float = 0.0,
    acoustics: acoustics_lib.Acoustics | None = None,
    rooms: acoustics_lib.RoomBank | None = None,
    augment_on_device: bool = False,
    clips_on_device: np.ndarray | None = None,
) -> Batch:
  """The training batch of step `step`: a pure function of its arguments."""
  _check_augment_on_device(augment_on_device, augmentation, spec_augment,
                           acoustics)
  _check_clips_on_device(clips_on_device, dataset, augment_on_device)
  examples = dataset.split('training')
  num_windows = window_rows(batch_size, windows, window_fraction)
  indices = train_example_indices(len(examples), batch_size - num_windows,
                                  seed, step)
  rows = [examples[index] for index in indices]
  is_silence = np.array([example.path is None for example in rows])
  labels = np.array([example.label for example in rows], np.int32)
  if clips_on_device is not None:  # the device gathers the audio
    batch = {'clip_index': np.where(is_silence, -1, indices).astype(np.int32),
             'label': labels,
             'weight': clips_on_device[indices].astype(np.float32)}
  else:
    clips, readable = _load_examples(
        rows, _foreground(clip_samples, foreground_samples), sample_rate)
    batch = {'audio': _host_audio(clips, is_silence, noise, seed, step,
                                  augmentation, clip_samples, acoustics, rooms,
                                  augment_on_device),
             'label': labels, 'weight': readable.astype(np.float32)}
  if augment_on_device:
    batch['is_silence'] = is_silence
    batch['augment'] = np.ones(len(rows), bool)
  if num_windows:
    rng = np.random.default_rng([seed, _WINDOW_STREAM, step])
    chosen = np.sort(rng.integers(len(windows), size=num_windows))
    batch = _with_window_rows(batch, windows, chosen, dataset.labels)
  if spec_augment is not None:
    rng = np.random.default_rng([seed, _SPEC_AUGMENT_STREAM, step])
    batch['time_mask'], batch['frequency_mask'] = augment.spec_augment_masks(
        rng, batch_size, *feature_shape, spec_augment
    )
  return batch


def _host_audio(clips: np.ndarray, is_silence: np.ndarray,
                noise: Sequence[np.ndarray], seed: int, step: int,
                augmentation: augment.AudioAugmentation | None,
                clip_samples: int,
                acoustics: acoustics_lib.Acoustics | None,
                rooms: acoustics_lib.RoomBank | None,
                augment_on_device: bool) -> np.ndarray:
  """The [B, clip_samples] audio of the dataset rows, augmented on the host
  unless the device augments it (then only placed at the clip's end)."""
  if augmentation is not None and not augment_on_device:
    rng = np.random.default_rng([seed, _AUGMENT_STREAM, step])
    clips = augment.augment_batch(
        clips, is_silence, noise if acoustics is None else [], rng,
        augmentation, window_samples=clip_samples)
  elif clips.shape[1] < clip_samples:
    clips = np.pad(clips, ((0, 0), (clip_samples - clips.shape[1], 0)))
  if acoustics is not None:
    rng = np.random.default_rng([seed, _ACOUSTICS_STREAM, step])
    clips = acoustics.augment(clips, is_silence, noise, rng, rooms)
  return clips


def _with_window_rows(batch: Batch, windows: windows_lib.WindowBank,
                      chosen: np.ndarray, labels: Sequence[str]) -> Batch:
  """``batch`` followed by the window-bank rows ``chosen`` (never augmented;
  a word that is not a label trains _unknown_). With the clips on the
  device, the rows carry ``window_index`` instead of audio."""
  count = len(chosen)
  index = {label: i for i, label in enumerate(labels)}
  extra = {
      'label': np.array([index.get(windows.words[row],
                                   speech_commands.UNKNOWN_INDEX)
                         for row in chosen], np.int32),
      'weight': np.ones(count, np.float32),
      'is_silence': np.zeros(count, bool),
      'augment': np.zeros(count, bool),
  }
  if 'audio' in batch:
    extra['audio'] = windows.float_audio(chosen)
  else:
    extra['clip_index'] = np.full(count, -1, np.int32)
    extra['window_index'] = chosen.astype(np.int32)
    batch = dict(batch, window_index=np.full(len(batch['label']), -1,
                                             np.int32))
  return {key: np.concatenate([value, extra[key]])
          for key, value in batch.items()}


def _check_clips_on_device(clips_on_device: np.ndarray | None,
                           dataset: speech_commands.SpeechCommands,
                           augment_on_device: bool) -> None:
  """Refuses a readable mask that does not fit the split, or clips on the
  device without the augmentation there."""
  if clips_on_device is None:
    return
  if not augment_on_device:
    raise ValueError('clips_on_device needs augment_on_device=True: the '
                     'host holds no audio to augment')
  size = len(dataset.split('training'))
  if np.shape(clips_on_device) != (size,):
    raise ValueError(f'clips_on_device of shape {np.shape(clips_on_device)}, '
                     f'expected ({size},): one readable flag per training '
                     'example')


def _check_augment_on_device(
    augment_on_device: bool,
    augmentation: augment.AudioAugmentation | None,
    spec_augment: augment.SpecAugment | None,
    acoustics: acoustics_lib.Acoustics | None,
) -> None:
  """Refuses what the host would do besides reading under augment_on_device."""
  if not augment_on_device:
    return
  if augmentation is None:
    raise ValueError('augment_on_device=True with augmentation=None: nothing '
                     'to augment on the device')
  if spec_augment is not None:
    raise ValueError('augment_on_device=True with spec_augment: the device '
                     'draws the SpecAugment masks; pass spec_augment=None')
  if acoustics is not None:
    raise ValueError('augment_on_device=True with acoustics: the room '
                     'simulation runs on the host only')


def window_rows(batch_size: int, windows: windows_lib.WindowBank | None,
                window_fraction: float) -> int:
  """Rows of each training batch drawn from the window bank.

  Raises:
    ValueError: a fraction outside [0, 1), or one without a (non-empty)
      bank.
  """
  if not 0.0 <= window_fraction < 1.0:
    raise ValueError(f'window_fraction={window_fraction}, expected a fraction '
                     'in [0, 1)')
  if window_fraction and (windows is None or not len(windows)):
    raise ValueError(f'window_fraction={window_fraction} but no window bank '
                     '(or an empty one) to draw from')
  if windows is None:
    return 0
  return min(batch_size - 1, int(round(batch_size * window_fraction)))


def _prefetch(
    make_batch: Callable[[int], Batch],
    indices: Iterable[int],
    num_threads: int | None,
    prefetch: int,
) -> Iterator[Batch]:
  """Yields make_batch(i) for i in indices, in order, computed by threads."""
  num_threads = num_threads or default_num_threads()
  if num_threads < 1 or prefetch < 1:
    raise ValueError(
        f'num_threads={num_threads} and prefetch={prefetch}, expected >= 1'
    )
  return _prefetched(make_batch, iter(indices), num_threads, prefetch)


def _prefetched(
    make_batch: Callable[[int], Batch],
    indices: Iterator[int],
    num_threads: int,
    prefetch: int,
) -> Iterator[Batch]:
  with concurrent.futures.ThreadPoolExecutor(
      num_threads, thread_name_prefix='kws_data'
  ) as pool:
    pending = collections.deque(
        pool.submit(make_batch, index)
        for index in itertools.islice(indices, prefetch)
    )
    try:
      while pending:
        batch = pending.popleft().result()
        for index in itertools.islice(indices, 1):
          pending.append(pool.submit(make_batch, index))
        yield batch
    finally:
      for future in pending:
        future.cancel()


def train_batches(
    dataset: speech_commands.SpeechCommands,
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    num_steps: int | None = None,
    augmentation: augment.AudioAugmentation | None = DEFAULT_AUGMENTATION,
    spec_augment: augment.SpecAugment | None = None,
    feature_shape: tuple[int, int] | None = None,
    clip_samples: int = audio.CLIP_SAMPLES,
    sample_rate: int = audio.SAMPLE_RATE,
    foreground_samples: int | None = None,
    windows: windows_lib.WindowBank | None = None,
    window_fraction: float = 0.0,
    acoustics: acoustics_lib.Acoustics | None = None,
    rooms: acoustics_lib.RoomBank | None = None,
    augment_on_device: bool = False,
    clips_on_device: np.ndarray | None = None,
    num_threads: int | None = None,
    prefetch: int = 4,
) -> Iterator[Batch]:
  """Training batches for steps start_step, start_step + 1, ... (no end).

  Args:
    dataset: The index; its "training" split and background noise are used.
    batch_size: Rows per batch, B.
    seed: Determines the epoch permutations and the augmentation.
    start_step: First step to yield; resuming at k repeats an uninterrupted run.
    num_steps: Stop after this many batches (None: never stop).
    augmentation: Audio augmentation, or None for clean training audio.
    spec_augment: If set, also emit SpecAugment masks for `feature_shape`.
    feature_shape: (num_frames T, num_bins F) of the model's features.
    clip_samples, sample_rate: Clip length and rate of "audio".
    foreground_samples: Length files are fit to before they are placed at
      the end of the clip (default: clip_samples); see the module docstring.
    windows, window_fraction: A window bank and the fraction of each batch
      drawn from it (see the module docstring).
    acoustics, rooms: Real-world acoustics for the dataset rows and the room
      responses it draws from (see the module docstring).
    augment_on_device: Leave the augmentation to the train step: unaugmented
      placed audio plus "is_silence" and "augment" (see the module
      docstring). Needs an `augmentation` (None: nothing to augment), no
      spec_augment (the device draws the masks) and no acoustics.
    clips_on_device: The training split is on the device
      (``device_data.load_clips``); this is its readable flag per example.
      Batches then hold indices instead of audio: no file is read (see the
      module docstring). Needs augment_on_device.
    num_threads: Loader threads (default: all cores).
    prefetch: Batches computed ahead of the consumer.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}, expected >= 1')
  if start_step < 0:
    raise ValueError(f'start_step={start_step}, expected >= 0')
  if (spec_augment is None) != (feature_shape is None):
    raise ValueError('spec_augment and feature_shape must be given together')
  _check_augment_on_device(augment_on_device, augmentation, spec_augment,
                           acoustics)
  _check_clips_on_device(clips_on_device, dataset, augment_on_device)
  if not dataset.split('training'):
    raise ValueError(f'the training split of {dataset.data_dir} is empty')
  window_rows(batch_size, windows, window_fraction)  # checks the settings
  if windows is not None and windows.window_samples != clip_samples:
    raise ValueError(f'window bank of {windows.window_samples}-sample '
                     f'windows, expected clip_samples={clip_samples}')
  if windows is not None and windows.sample_rate != sample_rate:
    raise ValueError(f'window bank at {windows.sample_rate} Hz, expected '
                     f'{sample_rate} Hz')
  if acoustics is not None and acoustics.sample_rate != sample_rate:
    raise ValueError(f'acoustics at {acoustics.sample_rate} Hz, expected '
                     f'{sample_rate} Hz')
  host_augments = augmentation is not None and not augment_on_device
  noise = (
      load_background_noise(dataset, sample_rate, clip_samples)
      if host_augments or acoustics is not None
      else []
  )
  make_batch = functools.partial(
      train_batch,
      dataset,
      noise,
      batch_size=batch_size,
      seed=seed,
      augmentation=augmentation,
      spec_augment=spec_augment,
      feature_shape=feature_shape,
      clip_samples=clip_samples,
      sample_rate=sample_rate,
      foreground_samples=_foreground(clip_samples, foreground_samples),
      windows=windows,
      window_fraction=window_fraction,
      acoustics=acoustics,
      rooms=rooms,
      augment_on_device=augment_on_device,
      clips_on_device=clips_on_device,
  )
  steps = (
      itertools.count(start_step)
      if num_steps is None
      else range(start_step, start_step + num_steps)
  )
  return _prefetch(make_batch, steps, num_threads, prefetch)


def num_eval_batches(
    dataset: speech_commands.SpeechCommands, split: str, batch_size: int
) -> int:
  """Batches of eval_batches: ceil(len(split) / batch_size)."""
  return math.ceil(len(dataset.split(split)) / batch_size)


def eval_batch(
    dataset: speech_commands.SpeechCommands,
    split: str,
    index: int,
    *,
    batch_size: int,
    clip_samples: int = audio.CLIP_SAMPLES,
    sample_rate: int = audio.SAMPLE_RATE,
    foreground_samples: int | None = None,
) -> Batch:
  """Batch `index` of a split: rows [index * B, (index + 1) * B), padded."""
  examples = dataset.split(split)[index * batch_size : (index + 1) * batch_size]
  clips = np.zeros((batch_size, clip_samples), np.float32)
  label = np.zeros(batch_size, np.int32)
  weight = np.zeros(batch_size, np.float32)
  clips[: len(examples)], readable = _load_examples(
      examples, clip_samples, sample_rate, foreground_samples
  )
  label[: len(examples)] = [example.label for example in examples]
  weight[: len(examples)] = readable
  return {'audio': clips, 'label': label, 'weight': weight}


def eval_batches(
    dataset: speech_commands.SpeechCommands,
    split: str,
    batch_size: int,
    *,
    clip_samples: int = audio.CLIP_SAMPLES,
    sample_rate: int = audio.SAMPLE_RATE,
    foreground_samples: int | None = None,
    num_threads: int | None = None,
    prefetch: int = 4,
) -> Iterator[Batch]:
  """All of `split` once, in order, unaugmented, in num_eval_batches batches."""
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}, expected >= 1')
  if not dataset.split(split):
    raise ValueError(f'split {split!r} of {dataset.data_dir} is empty')
  make_batch = functools.partial(
      eval_batch,
      dataset,
      split,
      batch_size=batch_size,
      clip_samples=clip_samples,
      sample_rate=sample_rate,
      foreground_samples=_foreground(clip_samples, foreground_samples),
  )
  num_batches = num_eval_batches(dataset, split, batch_size)
  return _prefetch(make_batch, range(num_batches), num_threads, prefetch)
