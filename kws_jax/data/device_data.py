"""A training split held on the device: read once, then indexed by the step.

Speech Commands' training split is 2.7 GB as 16-bit samples: it fits on an
accelerator, and then the host need not read a file per row per step. The
clips are read once (``load_clips``), put on the device, and each training
batch carries indices instead of audio (``pipeline.train_batches(...,
clips_on_device=...)``); the jitted train step gathers the rows
(``gather_audio``) and augments them there (``device_augment``).

Clips are stored as int16 when every sample is a multiple of 2**-15 (16-bit
files at the model's rate: the exact samples), float32 otherwise. Window
banks (``data.windows``) are int16 already and go to the device the same way.

Like ``device_augment``, this module imports JAX; the rest of
``kws_jax.data`` does not.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from kws_jax.data import audio as audio_lib
from kws_jax.data import speech_commands
from kws_jax.data import windows as windows_lib

INT16_SCALE = 2.0**-15


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=['samples'], meta_fields=['scale'])
@dataclasses.dataclass(frozen=True)
class ClipStore:
  """Clips of one length, to put on the device once.

  Attributes:
    samples: int16 or float32 ``[N, samples]``; row i is clip i.
    scale: float value of one stored unit (2**-15 for int16, 1 for float32).
  """

  samples: jax.Array | np.ndarray
  scale: float

  def __len__(self) -> int:
    return int(np.shape(self.samples)[0])

  @property
  def clip_samples(self) -> int:
    return int(np.shape(self.samples)[1])

  @property
  def nbytes(self) -> int:
    return int(np.prod(np.shape(self.samples))) * np.dtype(
        self.samples.dtype).itemsize


def store(clips: np.ndarray) -> ClipStore:
  """float32 clips ``[N, samples]`` as int16 when that is exact, else float32."""
  clips = np.asarray(clips, np.float32)
  units = np.round(clips.astype(np.float64) / INT16_SCALE)
  if (units.size and np.all(units * INT16_SCALE == clips) and
      units.min() >= -2**15 and units.max() < 2**15):
    return ClipStore(units.astype(np.int16), INT16_SCALE)
  return ClipStore(clips, 1.0)


def window_store(bank: windows_lib.WindowBank) -> ClipStore:
  """A window bank's int16 windows, as they are."""
  return ClipStore(bank.audio, INT16_SCALE)


def split_bytes(dataset: speech_commands.SpeechCommands, split: str,
                clip_samples: int) -> int:
  """Device bytes of ``load_clips`` for ``split`` if its clips are int16."""
  files = sum(example.path is not None for example in dataset.split(split))
  return files * clip_samples * 2


def load_clips(dataset: speech_commands.SpeechCommands, split: str,
               clip_samples: int, sample_rate: int = audio_lib.SAMPLE_RATE,
               num_threads: int = 1, progress: bool = True
               ) -> tuple[ClipStore, np.ndarray]:
  """Reads every file of ``split`` once: (store ``[N, clip_samples]``, readable).

  Row i is example i of the split, each file fit to ``clip_samples`` as the
  loader fits it (``audio.read_clip``); silence examples are zero rows. An
  unreadable file gives a zero row, ``readable[i] = False`` (the loader then
  gives its rows weight 0) and one warning naming it.

  Raises:
    ValueError: an empty split or fewer than one thread.
  """
  examples = dataset.split(split)
  if not examples:
    raise ValueError(f'split {split!r} of {dataset.data_dir} is empty')
  if num_threads < 1:
    raise ValueError(f'num_threads={num_threads}, expected >= 1')
  clips = np.zeros((len(examples), clip_samples), np.float32)
  readable = np.ones(len(examples), bool)

  def read(row: int) -> None:
    path = examples[row].path
    if path is None:
      return
    try:
      clips[row] = audio_lib.read_clip(path, clip_samples, sample_rate)
    except (OSError, ValueError) as error:
      readable[row] = False
      warnings.warn(f'skipping unreadable example {path}: {error}',
                    stacklevel=3)

  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    list(tqdm(pool.map(read, range(len(examples))), total=len(examples),
              desc=f'reading {split}', unit='clip', disable=not progress))
  return store(clips), readable


def gather_audio(batch: dict[str, jax.Array], clips: ClipStore,
                 windows: ClipStore | None, window_samples: int
                 ) -> dict[str, jax.Array]:
  """The batch's audio, gathered on the device from its indices.

  Args:
    batch: ``clip_index`` int32 [B] (row of ``clips``, -1: a zero row, as
      for silence), optionally ``window_index`` int32 [B] (row of
      ``windows``, -1: not a window row), and anything else (kept).
    clips: the training split (``load_clips``), N samples per clip.
    windows: the window bank's store (W samples per window) or None.
    window_samples: W >= N; each clip ends where its window ends.

  Returns:
    The batch with ``audio`` float32 [B, W] and without the indices: what
    ``pipeline.train_batch(..., augment_on_device=True)`` reads from disk.
  """
  clip_samples = clips.clip_samples
  if clip_samples > window_samples:
    raise ValueError(f'clips of {clip_samples} samples, expected at most '
                     f'window_samples={window_samples}')
  index = batch['clip_index']
  rows = jnp.take(clips.samples, jnp.maximum(index, 0), axis=0)
  rows = jnp.where(index[:, None] >= 0,
                   rows.astype(jnp.float32) * clips.scale, 0.0)
  audio = jnp.pad(rows, ((0, 0), (window_samples - clip_samples, 0)))
  out = {k: v for k, v in batch.items()
         if k not in ('clip_index', 'window_index')}
  if 'window_index' in batch:
    if windows is None or windows.clip_samples != window_samples:
      raise ValueError(
          'batch holds window_index but the window store is '
          f'{"missing" if windows is None else windows.clip_samples}, '
          f'expected windows of {window_samples} samples')
    chosen = batch['window_index']
    window_rows = jnp.take(windows.samples, jnp.maximum(chosen, 0), axis=0)
    audio = jnp.where(chosen[:, None] >= 0,
                      window_rows.astype(jnp.float32) * windows.scale, audio)
  out['audio'] = audio
  return out


def readable_rows(readable: np.ndarray, indices: Sequence[int]) -> np.ndarray:
  """float32 weights [B]: 1 where the example's file was readable."""
  return np.asarray(readable)[np.asarray(indices, int)].astype(np.float32)
