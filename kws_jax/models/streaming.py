"""Streaming a model over raw audio: one block per step, or hours at once.

Every ``Model`` streams audio blocks of ``block_samples(model)`` samples:

    state = init_audio_state(model, batch)
    state, logits = audio_step(model, params, state, block)  # [B, labels]

A raw-audio model steps on the block itself; a feature model (``preprocess
'mfcc'``) first steps its frontend once per feature frame of the block. The
logits of a step are those of the clip-long window ending with the block.

``scan_logits`` runs ``audio_step`` under ``jax.lax.scan`` over a batch of
equal-length streams, and ``stream_logits_many`` streams many recordings of
any lengths (hours) at once: it cuts each into segments, scans the segments
of all recordings in batches of one shape and stitches each recording's
logits back: equal, to float rounding, to stepping the recording block by
block from the zero state. Each segment after a recording's first starts
with a warm-up of ``warmup_steps(model)`` steps, more than the receptive
field, so that its state is the one the uninterrupted stream would have; a
model with an unbounded receptive field (recurrent) instead streams one
recording per batch row, segment after segment, carrying the rows' states.
``stream_logits`` is the case of one recording.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from kws_jax.models.model import Model

Array = jax.Array


def block_samples(model: Model) -> int:
  """Audio samples one streaming step consumes."""
  return model.audio_model.block_size


def init_audio_state(model: Model, batch_size: int) -> Any:
  """The zero state of ``audio_step`` for ``batch_size`` streams."""
  return model.audio_model.init_state(batch_size)


def audio_step(model: Model, params: Any, state: Any, block: Array
               ) -> tuple[Any, Array]:
  """One step on ``block [B, block_samples]``: (state, logits ``[B, labels]``)."""
  state, logits = model.audio_model.step(params, state, block)
  return state, logits[:, 0]


def receptive_field_samples(model: Model) -> int:
  """Samples of audio that one step's logits depend on."""
  return model.audio_model.receptive_field


def warmup_steps(model: Model) -> int | None:
  """Steps after which a stream's state no longer depends on where it began;
  None when it always does (a recurrent layer, the micro frontend's noise
  estimate: an unbounded receptive field)."""
  field = receptive_field_samples(model)
  if math.isinf(field):
    return None
  return math.ceil(field / block_samples(model)) + 1


@functools.partial(jax.jit, static_argnums=0)
def scan_logits(model: Model, params: Any, audio: Array) -> Array:
  """Streams a batch of recordings: ``[B, S * block]`` -> logits ``[B, S, labels]``.

  Row ``s`` is what ``audio_step`` returns for block ``s``, the state
  starting at zero. ``audio`` must hold whole blocks.
  """
  size = block_samples(model)
  batch, samples = audio.shape
  if samples % size:
    raise ValueError(f'{model.name}: {samples} samples per stream, expected a '
                     f'multiple of the {size}-sample block.')
  blocks = jnp.moveaxis(audio.reshape(batch, samples // size, size), 1, 0)

  def step(state, block):
    return audio_step(model, params, state, block)

  _, logits = jax.lax.scan(step, init_audio_state(model, batch), blocks)
  return jnp.moveaxis(logits, 0, 1)


@functools.partial(jax.jit, static_argnums=0)
def _scan_rows(model: Model, params: Any, state: Any, fresh: Array,
               audio: Array) -> tuple[Any, Array]:
  """``scan_logits`` of ``audio [B, S * block]`` carrying ``state``.

  Rows where ``fresh [B]`` is True start from the zero state instead (a new
  recording in that row). Returns (state, logits ``[B, S, labels]``).
  """
  batch = audio.shape[0]

  def restart(old: Array, zero: Array) -> Array:
    return jnp.where(fresh.reshape((batch,) + (1,) * (old.ndim - 1)), zero, old)

  state = jax.tree.map(restart, state, init_audio_state(model, batch))
  blocks = jnp.moveaxis(audio.reshape(batch, -1, block_samples(model)), 1, 0)
  state, logits = jax.lax.scan(
      lambda s, b: audio_step(model, params, s, b), state, blocks)
  return state, jnp.moveaxis(logits, 0, 1)


def _check_batch_first(model: Model) -> None:
  """Raises unless every state entry holds the streams on its first axis
  (``_scan_rows`` restarts rows of it)."""
  one, two = (jax.tree.leaves(jax.eval_shape(
      functools.partial(init_audio_state, model, batch))) for batch in (1, 2))
  for small, large in zip(one, two):
    if small.shape[:1] != (1,) or large.shape != (2, *small.shape[1:]):
      raise ValueError(
          f'{model.name}: a state entry has shape {small.shape} for 1 stream '
          f'and {large.shape} for 2, expected the streams on the first axis.')


def _recording(audio: Any, what: str) -> np.ndarray:
  """``audio`` as float32 ``[samples]``; a ValueError naming ``what`` if it
  is not 1-D, empty or not finite."""
  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1 or not len(audio):
    raise ValueError(f'{what} has shape {audio.shape}, expected [samples] '
                     'with samples > 0.')
  # min and max are NaN or infinite if any sample is, without a mask of
  # hours of audio.
  if not (np.isfinite(audio.min()) and np.isfinite(audio.max())):
    first = int(np.argmax(~np.isfinite(audio)))
    raise ValueError(f'{what} holds NaN or infinity (first at sample '
                     f'{first}: {audio[first]}).')
  return audio


def _drain(results: Iterator[tuple[Array, Any]],
           place: Callable[[np.ndarray, Any], None], bar: tqdm.tqdm) -> None:
  """``place(logits, work)`` of each dispatched ``(logits, work)``, read one
  behind: the host cuts batch n + 1 while the device runs batch n."""
  pending = None
  for result in results:
    if pending is not None:
      place(np.asarray(pending[0]), pending[1])
      bar.update()
    pending = result
  if pending is not None:
    place(np.asarray(pending[0]), pending[1])
    bar.update()


def _stream_windowed(model: Model, params: Any,
                     recordings: Sequence[np.ndarray], segment_steps: int,
                     batch_size: int, progress: bool, description: str
                     ) -> list[np.ndarray]:
  """Finite receptive field: the segments of all recordings, packed into
  batches of one shape. Returns ``[>= steps_i, labels]`` per recording."""
  size = block_samples(model)
  warmup = warmup_steps(model)
  length = (warmup + segment_steps) * size
  # Segment k of a recording starts at its step k * segment_steps and has
  # warmup + segment_steps steps: the first keeps all its logits, a later
  # one those after its warm-up, steps warmup + [k, k + 1) * segment_steps.
  counts = [max(1, math.ceil((math.ceil(len(audio) / size) - warmup) /
                             segment_steps)) for audio in recordings]
  segments = [(i, k) for i, count in enumerate(counts) for k in range(count)]
  batch_size = min(batch_size, len(segments))  # no all-padding batch rows
  logits = [np.zeros((count * segment_steps + warmup, model.label_count),
                     np.float32) for count in counts]

  def dispatch() -> Iterator[tuple[Array, list[tuple[int, int]]]]:
    for first in range(0, len(segments), batch_size):
      work = segments[first:first + batch_size]
      audio = np.zeros((batch_size, length), np.float32)  # padded rows: 0
      for row, (i, k) in enumerate(work):
        start = k * segment_steps * size
        piece = recordings[i][start:start + length]
        audio[row, :len(piece)] = piece
      yield scan_logits(model, params, jnp.asarray(audio)), work

  def place(out: np.ndarray, work: list[tuple[int, int]]) -> None:
    for row, (i, k) in enumerate(work):
      if k == 0:
        logits[i][:warmup + segment_steps] = out[row]
      else:
        begin = warmup + k * segment_steps
        logits[i][begin:begin + segment_steps] = out[row, warmup:]

  with tqdm.tqdm(total=math.ceil(len(segments) / batch_size),
                 desc=description, unit='batch', disable=not progress) as bar:
    _drain(dispatch(), place, bar)
  return logits


def _row_queues(counts: Sequence[int], rows: int
                ) -> list[list[tuple[int, int]]]:
  """Recordings of ``counts[i]`` segments dealt to ``rows`` batch rows, each
  (longest first) to the row with the fewest segments so far.

  Returns per row its ``(recording, segment)`` in the order it streams them.
  """
  queues = [[] for _ in range(rows)]
  loads = [(0, row) for row in range(rows)]
  for i in sorted(range(len(counts)), key=lambda i: -counts[i]):
    load, row = heapq.heappop(loads)
    queues[row].extend((i, k) for k in range(counts[i]))
    heapq.heappush(loads, (load + counts[i], row))
  return queues


def _stream_recurrent(model: Model, params: Any,
                      recordings: Sequence[np.ndarray], segment_steps: int,
                      batch_size: int, progress: bool, description: str
                      ) -> list[np.ndarray]:
  """Unbounded receptive field: one batch row per recording, stepped segment
  by segment carrying each row's state. Returns ``[>= steps_i, labels]``."""
  _check_batch_first(model)
  length = segment_steps * block_samples(model)
  counts = [math.ceil(len(audio) / length) for audio in recordings]
  rows = min(batch_size, len(recordings))
  queues = _row_queues(counts, rows)
  logits = [np.zeros((count * segment_steps, model.label_count), np.float32)
            for count in counts]

  def dispatch() -> Iterator[tuple[Array, list[tuple[int, int] | None]]]:
    state = init_audio_state(model, rows)
    for turn in range(max(map(len, queues))):
      work = [queue[turn] if turn < len(queue) else None for queue in queues]
      audio = np.zeros((rows, length), np.float32)  # after a recording: 0
      fresh = np.ones(rows, bool)
      for row, item in enumerate(work):
        if item is not None:
          i, k = item
          fresh[row] = k == 0
          piece = recordings[i][k * length:(k + 1) * length]
          audio[row, :len(piece)] = piece
      state, out = _scan_rows(model, params, state, jnp.asarray(fresh),
                              jnp.asarray(audio))
      yield out, work

  def place(out: np.ndarray, work: list[tuple[int, int] | None]) -> None:
    for row, item in enumerate(work):
      if item is not None:
        i, k = item
        logits[i][k * segment_steps:(k + 1) * segment_steps] = out[row]

  with tqdm.tqdm(total=max(map(len, queues)), desc=description,
                 unit='segment', disable=not progress) as bar:
    _drain(dispatch(), place, bar)
  return logits


def _stream(model: Model, params: Any, recordings: list[np.ndarray],
            segment_steps: int, batch_size: int, progress: bool,
            description: str) -> list[np.ndarray]:
  """``stream_logits_many`` of checked recordings."""
  if segment_steps < 1 or batch_size < 1:
    raise ValueError(f'segment_steps={segment_steps} and batch_size='
                     f'{batch_size}, expected >= 1.')
  if not recordings:
    return []
  path = (_stream_recurrent if warmup_steps(model) is None
          else _stream_windowed)
  logits = path(model, params, recordings, segment_steps, batch_size,
                progress, description)
  size = block_samples(model)
  return [out[:math.ceil(len(audio) / size)]
          for out, audio in zip(logits, recordings)]


def stream_logits_many(model: Model, params: Any,
                       recordings: Sequence[np.ndarray], *,
                       segment_steps: int = 1024, batch_size: int = 16,
                       progress: bool = False,
                       description: str = 'streaming') -> list[np.ndarray]:
  """Logits of every step of many recordings at once, batched across them.

  Returns, in the order of ``recordings``, float32 ``[steps_i, labels]``
  with ``steps_i = ceil(len(recordings[i]) / block)``: equal, to float
  rounding, to stepping each recording block by block from the zero state
  (a last partial block padded with zeros, as the detector's ``blocks``).

  A model with a finite receptive field: every recording is cut into
  segments of ``segment_steps`` steps, each after its first preceded by
  ``warmup_steps(model)`` steps of the audio before it, and the segments of
  all recordings are scanned ``batch_size`` at a time, so many short
  recordings fill the batches as one long one does. A model whose state
  never forgets (``warmup_steps`` None: recurrent layers, the micro
  frontend): each recording takes a batch row, up to ``batch_size`` rows,
  and the rows step segment by segment carrying their states; a row that
  finishes a recording streams zeros to the segment's end (no effect on its
  logits) and then starts the next recording from the zero state.

  Either way one shape is compiled per (model, batch, segment): ``batch``
  is ``batch_size``, or fewer when there are fewer segments (recordings).

  Args:
    model: the model; ``block_samples(model)`` samples per step.
    params: its parameters.
    recordings: float audio ``[samples_i]`` each, in [-1, 1).
    segment_steps: steps scanned per call (after the warm-up).
    batch_size: segments (rows) scanned at once.
    progress: show a tqdm bar of the batches.
    description: the bar's label.

  Raises:
    ValueError: a recording that is not 1-D, empty or not finite (naming
      its index); segment_steps or batch_size below 1.
  """
  checked = [_recording(audio, f'stream_logits_many(): recording {i}')
             for i, audio in enumerate(recordings)]
  return _stream(model, params, checked, segment_steps, batch_size, progress,
                 description)


def stream_logits(model: Model, params: Any, audio: np.ndarray, *,
                  segment_steps: int = 1024, batch_size: int = 16,
                  progress: bool = False, description: str = 'streaming'
                  ) -> np.ndarray:
  """Logits of every step of one long recording: float32 ``[steps, labels]``.

  ``steps = ceil(len(audio) / block)``: a last partial block is padded with
  zeros, as the detector's ``blocks`` does. The recording is cut into
  segments of ``segment_steps`` steps, each after the first preceded by
  ``warmup_steps(model)`` steps of the audio before it, and ``batch_size``
  segments are scanned at a time (one compiled shape; fewer when the
  recording has fewer segments). A model whose state never forgets
  (``warmup_steps`` None: recurrent layers) is stepped through the segments
  in order instead, one at a time, carrying its state: exact, not batched.
  This is ``stream_logits_many`` of one recording.

  Raises:
    ValueError: audio that is not 1-D, empty or not finite; segment_steps or
      batch_size below 1.
  """
  audio = _recording(audio, 'stream_logits(): audio')
  [logits] = _stream(model, params, [audio], segment_steps, batch_size,
                     progress, description)
  return logits
