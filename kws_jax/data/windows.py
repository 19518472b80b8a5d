"""Window banks: training windows cut from long streams, with their words.

A bank is one ``.npz`` file of clip-long windows of 16 kHz audio (int16) and
the word each one is labelled with. Two things fill banks:

  - ``cut_windows`` cuts a generated stream (``kws_jax.data.synth_stream``)
    around its ground truth: a positive window ends shortly after a keyword,
    as the detector sees it when it should fire, with the speech and noise
    that came before it; a negative window holds no part of any keyword.
  - hard-negative mining (``kws_jax.wakeword.mining``) keeps the windows of
    keyword-free audio on which a model fired.

Training mixes bank rows into its batches (``data.window_banks``,
``data.window_fraction``; see ``kws_jax.data.pipeline``). A word that is not
one of the model's labels trains the ``_unknown_`` class.

    bank = cut_windows(stream, events, 32000, rng, negatives=2000)
    save_bank('runs/x/stream_windows.npz', bank)
    bank = load_bank('runs/x/stream_windows.npz')   # audio [N, 32000]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from kws_jax.data import audio
from kws_jax.data import npz
from kws_jax.data import speech_commands

NEGATIVE_WORD = speech_commands.UNKNOWN_LABEL
# A positive window ends this long after the keyword's end, uniformly: the
# detector's posterior rises as the word ends and stays up for ~0.5 s.
DEFAULT_POSITIVE_DELAY_S = (0.05, 0.5)
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class WindowBank:
  """Labelled windows.

  Attributes:
    audio: int16 ``[N, samples]`` at ``sample_rate`` (full scale 32767).
    words: the word of each row, ``NEGATIVE_WORD`` for no keyword.
    sample_rate: samples per second.
  """

  audio: np.ndarray
  words: tuple[str, ...]
  sample_rate: int = audio.SAMPLE_RATE

  def __post_init__(self):
    if self.audio.ndim != 2 or self.audio.dtype != np.int16:
      raise ValueError(f'window bank audio of shape {self.audio.shape} and '
                       f'dtype {self.audio.dtype}, expected int16 [N, samples]')
    if len(self.words) != len(self.audio):
      raise ValueError(f'window bank of {len(self.audio)} windows but '
                       f'{len(self.words)} words')

  def __len__(self) -> int:
    return len(self.audio)

  @property
  def window_samples(self) -> int:
    return self.audio.shape[1]

  def float_audio(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
    """Rows as float32 in [-1, 1]."""
    return self.audio[rows].astype(np.float32) / 32768.0

  def counts(self) -> dict[str, int]:
    """Windows per word."""
    words, counts = np.unique(np.array(self.words, dtype=object),
                              return_counts=True)
    return {str(word): int(count) for word, count in zip(words, counts)}


def to_int16(samples: np.ndarray) -> np.ndarray:
  """float audio in [-1, 1] -> int16, rounded and clipped."""
  return np.clip(np.round(np.asarray(samples) * 32768.0), -32768,
                 32767).astype(np.int16)


def from_windows(windows: np.ndarray, words: Sequence[str],
                 sample_rate: int = audio.SAMPLE_RATE) -> WindowBank:
  """A bank of float32 windows ``[N, samples]``."""
  return WindowBank(to_int16(windows), tuple(words), sample_rate)


def concatenate(banks: Sequence[WindowBank]) -> WindowBank:
  """One bank of all rows, in order.

  Raises:
    ValueError: no bank, or banks of other window lengths or rates.
  """
  if not banks:
    raise ValueError('concatenate(): no window banks')
  shapes = {(bank.window_samples, bank.sample_rate) for bank in banks}
  if len(shapes) > 1:
    raise ValueError(f'window banks of different (samples, rate): {shapes}')
  return WindowBank(np.concatenate([bank.audio for bank in banks]),
                    sum((bank.words for bank in banks), ()),
                    banks[0].sample_rate)


def save_bank(path: str | os.PathLike, bank: WindowBank) -> None:
  """Writes ``bank`` to ``path`` (.npz), atomically."""
  npz.save(path, _FORMAT_VERSION, audio=bank.audio,
           words=np.array(bank.words, dtype=np.str_),
           sample_rate=np.int64(bank.sample_rate))


def load_bank(path: str | os.PathLike) -> WindowBank:
  """Reads a bank written by ``save_bank``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a window bank of this format.
  """
  data = npz.load(path, 'window bank',
                  ('format', 'audio', 'words', 'sample_rate'), _FORMAT_VERSION)
  return WindowBank(data['audio'], tuple(str(w) for w in data['words']),
                    int(data['sample_rate']))


def window_ending_at(stream: np.ndarray, end: int, samples: int) -> np.ndarray:
  """``stream[end - samples:end]``, zeros before the stream's start."""
  window = np.zeros(samples, np.float32)
  start = end - samples
  piece = stream[max(0, start):end]
  window[samples - len(piece):] = piece
  return window


def cut_windows(stream: np.ndarray, events: Sequence, window_samples: int,
                rng: np.random.Generator, *, negatives: int,
                positive_delay_s: tuple[float, float] = DEFAULT_POSITIVE_DELAY_S,
                sample_rate: int = audio.SAMPLE_RATE) -> WindowBank:
  """Windows of a stream with a ground truth, as the detector sees them.

  Args:
    stream: float32 ``[samples]``.
    events: the keywords of the stream (``synth_stream.KeywordEvent``: word,
      start_s, end_s).
    window_samples: the model's clip length.
    rng: draws the delays and the negative windows.
    negatives: how many negative windows to draw, uniformly over the window
      ends whose windows overlap no keyword (fewer if the stream has fewer).
    positive_delay_s: each keyword gives one window ending a uniform
      ``[low, high]`` seconds after its end (clipped to the stream), if the
      whole keyword fits in it.
    sample_rate: of the stream.

  Returns:
    The positive windows (in event order), then the negatives.
  """
  stream = np.asarray(stream, np.float32)
  windows, words = [], []
  for event in events:
    delay = rng.uniform(*positive_delay_s)
    end = min(len(stream), int(round((event.end_s + delay) * sample_rate)))
    if end - window_samples <= event.start_s * sample_rate:
      windows.append(window_ending_at(stream, end, window_samples))
      words.append(event.word)
  # A window [end - W, end) is negative when it overlaps no keyword [s, e):
  # end <= s or end - W >= e.
  allowed = np.ones(len(stream) + 1, bool)
  allowed[:window_samples] = False  # no window reaches before the start
  for event in events:
    start = int(np.floor(event.start_s * sample_rate))
    stop = int(np.ceil(event.end_s * sample_rate))
    allowed[start + 1:min(len(allowed), stop + window_samples)] = False
  candidates = np.flatnonzero(allowed)
  count = min(negatives, len(candidates))
  for end in np.sort(rng.choice(candidates, count, replace=False)):
    windows.append(stream[end - window_samples:end].copy())
    words.append(NEGATIVE_WORD)
  if not windows:
    return WindowBank(np.zeros((0, window_samples), np.int16), (), sample_rate)
  return from_windows(np.stack(windows), words, sample_rate)
