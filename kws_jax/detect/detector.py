"""Keyword detection on a stream of any length, in constant memory.

Audio arrives in chunks (``wav_chunks`` reads a WAV file piece by piece,
``mic_chunks`` records the microphone), ``blocks`` cuts it into the runner's
blocks, and for each block the ``Detector``

1. runs the model: logits of the window ending with the block;
2. takes posteriors: softmax over all labels;
3. smooths them: the mean of the last ``smoothing_ms`` of posteriors;
4. fires a ``Detection(word, time_s, score)`` when a keyword's smoothed
   posterior crosses ``threshold`` upwards (it was below it one block
   before), unless the same keyword fired less than ``refractory_ms`` ago.
   As TensorFlow's ``RecognizeCommands`` (the Speech Commands streaming
   test), the refractory time holds back only the keyword that fired last:
   another keyword may fire at once, so a false accept does not swallow the
   true keyword that follows it. A crossing during the refractory time is
   dropped, not postponed.

``_silence_`` and ``_unknown_`` take part in the softmax but never fire.

Defaults (20 ms blocks, 1 s windows):
  * ``smoothing_ms=300``: a keyword of 0.3-0.8 s lies wholly inside the
    sliding 1 s window for 0.2-0.7 s, so the model's posterior for it is high
    for about that long. A 300 ms mean keeps most of such a peak's height
    while a one-block spike counts 1/15, and delays a crossing by ~0.15 s
    (at 0.8, 90% of the hits came within 0.37 s of the word's end; evaluation
    allows 1 s, as confident models cross 0.999 later). On an hour of ``synth_stream`` with the quickstart model,
    200-400 ms gave the lowest FRR at 20-200 FA/h; 20 ms and >= 500 ms
    (700 ms: FRR 93% at 200 FA/h against 52%) were worse.
  * ``threshold=0.8``: the model must prefer the keyword in most of the last
    15 windows. The best threshold depends on the model and the false accepts
    one tolerates: ``python -m kws_jax.detect --labels-csv`` sweeps it.
  * ``refractory_ms=1000``: a keyword stays in the 1 s window, and the
    posterior can dip and rise again, for up to a second after its end; no
    two keywords of the synthetic stream are closer than 1 s. 500-1500 ms
    measured within noise of each other. Holding back every keyword instead
    of the last one cost FRR at equal false accepts on the quickstart's
    stream: about 6 points at 700 FA/h, 20 at 1,400, nothing at 350
    (experiments/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import soxr
import tqdm

from kws_jax.data import audio
from kws_jax.detect.runners import StreamingRunner

DEFAULT_SMOOTHING_MS = 300.0
DEFAULT_THRESHOLD = 0.8
DEFAULT_REFRACTORY_MS = 1000.0
NON_KEYWORDS = ('_silence_', '_unknown_')
CHUNK_SECONDS = 1.0  # how much of a WAV file is read at a time
# Bytes per sample of each of audio.probe_wav's sample formats.
_SAMPLE_BYTES = {'pcm8': 1, 'pcm16': 2, 'pcm24': 3, 'pcm32': 4, 'float32': 4,
                 'float64': 8}


@dataclasses.dataclass(frozen=True)
class Detection:
  """A keyword fired at ``time_s`` (end of its block) with smoothed ``score``."""

  word: str
  time_s: float
  score: float


# -- Audio sources ---------------------------------------------------------


def wav_chunks(path: str | os.PathLike, sample_rate: int = audio.SAMPLE_RATE,
               chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
  """Reads a WAV file of any length as mono float32 chunks at ``sample_rate``.

  Only one chunk of ``chunk_seconds`` of the file is decoded at a time.
  Concatenated, the chunks equal ``audio.read_wav(path, sample_rate)``:
  exactly for a file at ``sample_rate``, and up to the resampler's
  streaming rounding otherwise. As there, several channels are averaged and
  another rate is resampled (soxr, streaming), each with one
  ``AudioConversionWarning`` naming the file; the header is checked, and the
  warnings given, by this call rather than at the first chunk. Unlike
  ``read_wav``, NaN or infinite float samples do not end the stream: they
  are read as zeros, with one warning at the first chunk that has them (as
  is clipping float samples beyond [-1, 1]).

  Yields:
    float32 ``[n]`` in [-1, 1], ``n`` about ``chunk_seconds * sample_rate``
    (the last chunks of a resampled file may be shorter or empty).

  Raises:
    FileNotFoundError, AudioFileError: see ``audio.probe_wav``.
  """
  path = os.fspath(path)
  info = audio.probe_wav(path)
  if info.num_channels > 1:
    warnings.warn(f'{path}: mixed {info.num_channels} channels down to mono',
                  audio.AudioConversionWarning, stacklevel=2)
  resampler = None
  if info.sample_rate != sample_rate:
    warnings.warn(f'{path}: resampled from {info.sample_rate} Hz to '
                  f'{sample_rate} Hz', audio.AudioConversionWarning,
                  stacklevel=2)
    resampler = soxr.ResampleStream(info.sample_rate, sample_rate, 1,
                                    dtype='float32', quality='HQ')
  chunk_frames = max(1, int(chunk_seconds * info.sample_rate))
  return _decode_chunks(path, info, chunk_frames, resampler)


def _decode_chunks(path: str, info: audio.WavInfo, chunk_frames: int,
                   resampler: soxr.ResampleStream | None
                   ) -> Iterator[np.ndarray]:
  frame_bytes = info.num_channels * _SAMPLE_BYTES[info.sample_format]
  is_float = info.sample_format.startswith('float')
  warned_non_finite = warned_clipped = False
  for start in range(0, info.num_frames, chunk_frames):
    count = min(chunk_frames, info.num_frames - start)
    part = dataclasses.replace(
        info, num_frames=count, data_offset=info.data_offset +
        start * frame_bytes)
    samples = audio._decode(path, part)  # pylint: disable=protected-access
    if is_float:
      # A stream goes on past broken samples: zeros for NaN and infinities,
      # clipping beyond [-1, 1], each with one warning per file.
      error = audio.non_finite_error(path, samples, info.sample_rate, start)
      if error is not None:
        if not warned_non_finite:
          warnings.warn(f'{error}; they are read as zeros (later ones '
                        'without a warning)', audio.AudioConversionWarning,
                        stacklevel=2)
          warned_non_finite = True
        samples = np.where(np.isfinite(samples), samples, 0.0)
      if not warned_clipped and np.abs(samples).max() > 1.0:
        samples = audio.clip_to_unit(path, samples)
        warned_clipped = True
      samples = np.clip(samples, -1.0, 1.0)
    mono = samples.mean(axis=1) if info.num_channels > 1 else samples[:, 0]
    if resampler is not None:
      last = start + count == info.num_frames
      mono = np.clip(resampler.resample_chunk(mono, last=last), -1.0, 1.0)
    yield np.ascontiguousarray(mono, np.float32)


def require_sounddevice():
  """The ``sounddevice`` module, which the microphone source needs.

  Raises:
    ModuleNotFoundError: it is not installed; the message says how to.
  """
  try:
    import sounddevice  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ModuleNotFoundError(
        'the microphone source needs the sounddevice package: pip install '
        'sounddevice') from None
  return sounddevice


def mic_chunks(sample_rate: int = audio.SAMPLE_RATE,
               chunk_samples: int = 320) -> Iterator[np.ndarray]:
  """Records the default microphone: mono float32 ``[chunk_samples]`` chunks.

  Runs until interrupted. Raises ModuleNotFoundError at the call when
  ``sounddevice`` is missing (see ``require_sounddevice``).
  """
  return _record(require_sounddevice(), sample_rate, chunk_samples)


def _record(sounddevice, sample_rate: int, chunk_samples: int
            ) -> Iterator[np.ndarray]:
  with sounddevice.InputStream(samplerate=sample_rate, channels=1,
                               dtype='float32', blocksize=chunk_samples) as mic:
    while True:
      samples, overflowed = mic.read(chunk_samples)
      if overflowed:
        warnings.warn('microphone: input overflow, audio was dropped',
                      RuntimeWarning, stacklevel=2)
      yield samples[:, 0].copy()


def blocks(chunks: Iterable[np.ndarray], block_samples: int
           ) -> Iterator[np.ndarray]:
  """Regroups audio chunks of any sizes into float32 ``[block_samples]`` blocks.

  At most one block of audio is held back between chunks; a last partial
  block is padded with zeros.
  """
  pending = np.zeros(0, np.float32)
  for chunk in chunks:
    data = np.concatenate([pending, np.asarray(chunk, np.float32)])
    whole = len(data) // block_samples * block_samples
    yield from data[:whole].reshape(-1, block_samples)
    pending = data[whole:].copy()
  if len(pending):
    yield np.pad(pending, (0, block_samples - len(pending)))


# -- Posteriors to detections ----------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
  """Posteriors of logits ``[..., labels]`` (float32)."""
  shifted = logits - np.max(logits, axis=-1, keepdims=True)
  exp = np.exp(shifted.astype(np.float64))
  return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def keyword_indices(labels: Sequence[str]) -> np.ndarray:
  """Indices of the labels that can fire: all but ``NON_KEYWORDS``.

  Raises:
    ValueError: no label is a keyword.
  """
  indices = np.array([i for i, label in enumerate(labels)
                      if label not in NON_KEYWORDS], np.int64)
  if not len(indices):
    raise ValueError(f'labels {tuple(labels)} hold no keyword, only '
                     f'{", ".join(NON_KEYWORDS)}.')
  return indices


# Longer smoothing or refractory windows than a minute are no detector's: the
# bound keeps a typo (1e12) from allocating terabytes.
MAX_MILLISECONDS = 60_000.0


def milliseconds_to_blocks(name: str, milliseconds: float, block_s: float,
                           minimum: int) -> int:
  """``milliseconds`` rounded to whole blocks of ``block_s`` seconds.

  Raises:
    ValueError: not a finite number of at most ``MAX_MILLISECONDS``, or the
      result is below ``minimum``; the message names ``name``.
  """
  if not 0 <= milliseconds <= MAX_MILLISECONDS:  # NaN fails too
    raise ValueError(f'{name} is {milliseconds:g} ms, expected 0 to '
                     f'{MAX_MILLISECONDS:g} ms.')
  count = int(round(milliseconds / 1000 / block_s))
  if count < minimum:
    raise ValueError(f'{name} is {milliseconds:g} ms = {count} blocks of '
                     f'{block_s * 1000:g} ms, expected at least {minimum}.')
  return count


class Smoother:
  """Moving average of the last ``window`` posterior rows ``[labels]``.

  Until ``window`` rows have come, the mean is over the rows so far.
  """

  def __init__(self, window: int, num_labels: int):
    self._rows = np.zeros((window, num_labels), np.float32)
    self.reset()

  def reset(self) -> None:
    self._rows[:] = 0
    self._count = 0

  def __call__(self, posterior: np.ndarray) -> np.ndarray:
    self._rows[self._count % len(self._rows)] = posterior
    self._count += 1
    filled = min(self._count, len(self._rows))
    return self._rows[:filled].mean(axis=0)


def smooth_posteriors(posteriors: np.ndarray, window: int) -> np.ndarray:
  """What ``Smoother(window, labels)`` gives for each row, all rows at once.

  ``posteriors`` float ``[rows, labels]`` -> float32 ``[rows, labels]``: the
  mean of the last ``window`` rows (of the rows so far at the start).
  """
  if window < 1:
    raise ValueError(f'smoothing window of {window} rows, expected >= 1')
  total = np.cumsum(np.asarray(posteriors, np.float64), axis=0)
  shifted = np.zeros_like(total)
  shifted[window:] = total[:-window]
  counts = np.minimum(np.arange(1, len(total) + 1), window)[:, None]
  return ((total - shifted) / counts).astype(np.float32)


@dataclasses.dataclass
class TriggerState:
  """What ``trigger`` carries from one call to the next.

  Attributes:
    above: bool ``[keywords]``, whether each score was >= threshold at the
      last row seen.
    since_last: rows since the last detection, counted from that last row
      (a detection there gives 0).
    last_keyword: index of the keyword that fired last, -1 before any.
  """

  above: np.ndarray
  since_last: int
  last_keyword: int = -1

  @classmethod
  def initial(cls, num_keywords: int, refractory_blocks: int) -> TriggerState:
    return cls(np.zeros(num_keywords, bool), refractory_blocks)


def trigger(scores: np.ndarray, threshold: float, refractory_blocks: int,
            state: TriggerState) -> list[tuple[int, int, float]]:
  """Threshold and refractory suppression over smoothed keyword scores.

  Row ``t`` fires when some keyword's score rises to >= ``threshold`` there
  (it was below at ``t - 1``), unless it is the keyword that fired last and
  that was fewer than ``refractory_blocks`` rows ago; of the rising keywords
  allowed, the one with the highest score wins. The one function serves the
  push-style ``Detector`` (one row per call) and the threshold sweep (all
  rows at once).

  Args:
    scores: float ``[rows, keywords]`` smoothed posteriors of the keywords.
    threshold: the detection threshold.
    refractory_blocks: rows after a detection during which that keyword
      does not fire again (>= 1).
    state: carried between calls on one stream; updated in place.

  Returns:
    ``(row, keyword, score)`` of each detection, rows counted in ``scores``.
  """
  above = scores >= threshold
  rising = above & ~np.concatenate([state.above[None], above[:-1]])
  fired = []
  last = -state.since_last - 1  # row of the last detection, before row 0
  last_keyword = state.last_keyword
  for row in np.flatnonzero(rising.any(axis=1)):
    allowed = rising[row].copy()
    if row - last < refractory_blocks and last_keyword >= 0:
      allowed[last_keyword] = False
    if not allowed.any():
      continue
    keyword = int(np.argmax(np.where(allowed, scores[row], -np.inf)))
    fired.append((int(row), keyword, float(scores[row, keyword])))
    last, last_keyword = row, keyword
  if len(scores):
    state.above = above[-1]
    state.since_last = len(scores) - 1 - last
    state.last_keyword = last_keyword
  return fired


class Detector:
  """Push-style detection: feed blocks one at a time, get detections.

  ``detector(block)`` returns the ``Detection`` of that block or None and
  leaves the block's smoothed posteriors (float32 ``[labels]``) in
  ``detector.smoothed``. With ``record=True`` it also keeps every block's
  smoothed posteriors for ``recorded()`` (12 floats per 20 ms: 8.6 MB per
  hour), which the threshold sweep of ``metrics`` needs.
  """

  def __init__(self, runner: StreamingRunner, *,
               threshold: float = DEFAULT_THRESHOLD,
               smoothing_ms: float = DEFAULT_SMOOTHING_MS,
               refractory_ms: float = DEFAULT_REFRACTORY_MS,
               record: bool = False):
    if not 0.0 < threshold <= 1.0:
      raise ValueError(f'threshold is {threshold}, expected 0 < threshold <= '
                       '1 (a smoothed posterior).')
    self.runner = runner
    self.threshold = threshold
    self.block_s = runner.block_samples / runner.sample_rate
    self.smoothing_ms = smoothing_ms
    self.refractory_ms = refractory_ms
    self.refractory_blocks = milliseconds_to_blocks(
        'refractory_ms', refractory_ms, self.block_s, 1)
    self.keywords = keyword_indices(runner.labels)
    self._smoother = Smoother(
        milliseconds_to_blocks('smoothing_ms', smoothing_ms, self.block_s, 1),
        len(runner.labels))
    self._record = record
    self.reset()

  def reset(self) -> None:
    """Starts a new stream (runner, smoothing, refractory and recording)."""
    self.runner.reset()
    self._smoother.reset()
    self._trigger = TriggerState.initial(len(self.keywords),
                                         self.refractory_blocks)
    self.blocks_seen = 0
    self.smoothed = np.zeros(len(self.runner.labels), np.float32)
    self._history = np.zeros((1024 if self._record else 0,
                              len(self.runner.labels)), np.float32)

  @property
  def time_s(self) -> float:
    """Seconds of audio seen: the end of the last block."""
    return self.blocks_seen * self.block_s

  def __call__(self, block: np.ndarray) -> Detection | None:
    self.smoothed = self._smoother(softmax(self.runner(block)))
    if self._record:
      if self.blocks_seen == len(self._history):
        self._history = np.concatenate([self._history,
                                        np.zeros_like(self._history)])
      self._history[self.blocks_seen] = self.smoothed
    self.blocks_seen += 1
    fired = trigger(self.smoothed[None, self.keywords], self.threshold,
                    self.refractory_blocks, self._trigger)
    if not fired:
      return None
    _, keyword, score = fired[0]
    return Detection(self.runner.labels[self.keywords[keyword]], self.time_s,
                     score)

  def recorded(self) -> np.ndarray:
    """Smoothed posteriors of every block so far: float32 ``[blocks, labels]``."""
    if not self._record:
      raise ValueError('Detector(record=False) keeps no posteriors; pass '
                       'record=True.')
    return self._history[:self.blocks_seen].copy()

  def feed(self, chunks: Iterable[np.ndarray]) -> Iterator[Detection]:
    """Runs over audio chunks of any sizes; yields detections as they fire."""
    for block in blocks(chunks, self.runner.block_samples):
      detection = self(block)
      if detection is not None:
        yield detection


def detect_wav(detector: Detector, path: str | os.PathLike,
               progress: bool = False) -> Iterator[Detection]:
  """Streams a WAV file of any length through ``detector`` (constant memory).

  Yields detections as they fire; ``progress`` shows a tqdm bar in seconds
  of audio read. The checks and warnings of ``wav_chunks`` happen at this
  call, not at the first detection.
  """
  rate = detector.runner.sample_rate
  info = audio.probe_wav(path)
  chunks = wav_chunks(path, rate)
  bar = tqdm.tqdm(total=round(info.num_frames / info.sample_rate, 2),
                  unit='s', desc=os.fspath(path), disable=not progress)

  def counted() -> Iterator[np.ndarray]:
    with bar:
      for chunk in chunks:
        bar.update(len(chunk) / rate)
        yield chunk

  return detector.feed(counted())
