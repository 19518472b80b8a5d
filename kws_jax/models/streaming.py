"""Streaming a model over raw audio: one block per step, or hours at once.

Every ``Model`` streams audio blocks of ``block_samples(model)`` samples:

    state = init_audio_state(model, batch)
    state, logits = audio_step(model, params, state, block)  # [B, labels]

A raw-audio model steps on the block itself; a feature model (``preprocess
'mfcc'``) first steps its frontend once per feature frame of the block. The
logits of a step are those of the clip-long window ending with the block.

``scan_logits`` runs ``audio_step`` under ``jax.lax.scan`` over a batch of
equal-length streams, and ``stream_logits`` cuts one long recording (hours)
into overlapping segments, scans them as a batch and stitches the logits
back: equal, to float rounding, to stepping the whole recording block by
block from the zero state. Each segment after the first starts with a
warm-up of ``warmup_steps(model)`` steps, more than the receptive field, so
that its state is the one the uninterrupted stream would have; a model with
an unbounded receptive field (recurrent) steps through the segments in
order instead.
"""

from __future__ import annotations

import functools
import math
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
def _scan_from(model: Model, params: Any, state: Any, audio: Array
               ) -> tuple[Any, Array]:
  """``scan_logits`` of one stream ``[1, S * block]`` from ``state``."""
  size = block_samples(model)
  blocks = audio.reshape(1, -1, size).transpose(1, 0, 2)
  state, logits = jax.lax.scan(
      lambda s, b: audio_step(model, params, s, b), state, blocks)
  return state, jnp.moveaxis(logits, 0, 1)


def _stream_in_order(model: Model, params: Any, padded: np.ndarray,
                     segment_steps: int, progress: bool, description: str
                     ) -> np.ndarray:
  """Logits of ``padded`` (whole segments of blocks) stepped in order, one
  segment per call, the state carried from each to the next."""
  size = block_samples(model)
  length = segment_steps * size
  state = init_audio_state(model, 1)
  logits = []
  for start in tqdm.trange(0, len(padded), length, desc=description,
                           unit='segment', disable=not progress):
    state, out = _scan_from(model, params, state,
                            jnp.asarray(padded[None, start:start + length]))
    logits.append(np.asarray(out[0]))
  return np.concatenate(logits)


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

  Raises:
    ValueError: audio that is not 1-D, empty or not finite; segment_steps or
      batch_size below 1.
  """
  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1 or not len(audio):
    raise ValueError(f'stream_logits(): audio of shape {audio.shape}, '
                     'expected [samples] with samples > 0.')
  if not np.isfinite(audio).all():
    raise ValueError('stream_logits(): the audio holds NaN or infinity.')
  if segment_steps < 1 or batch_size < 1:
    raise ValueError(f'segment_steps={segment_steps} and batch_size='
                     f'{batch_size}, expected >= 1.')
  size = block_samples(model)
  steps = math.ceil(len(audio) / size)
  warmup = warmup_steps(model)
  if warmup is None:
    padded = np.zeros(math.ceil(steps / segment_steps) * segment_steps * size,
                      np.float32)
    padded[:len(audio)] = audio
    return _stream_in_order(model, params, padded, segment_steps, progress,
                            description)[:steps]
  # Segment k holds steps [k * segment_steps, (k + 1) * segment_steps) plus
  # the warm-up before them; the first segment's warm-up slots are its own
  # first steps, so every segment has warmup + segment_steps steps.
  num_segments = max(1, math.ceil((steps - warmup) / segment_steps))
  batch_size = min(batch_size, num_segments)  # no padding segments to scan
  length = (warmup + segment_steps) * size
  padded = np.zeros(num_segments * segment_steps * size + length, np.float32)
  padded[:len(audio)] = audio
  logits = np.zeros((num_segments * segment_steps + warmup, model.label_count),
                    np.float32)
  for first in tqdm.trange(0, num_segments, batch_size, desc=description,
                           unit='batch', disable=not progress):
    segments = np.zeros((batch_size, length), np.float32)
    count = min(batch_size, num_segments - first)
    for row in range(count):
      start = (first + row) * segment_steps * size
      segments[row] = padded[start:start + length]
    out = np.asarray(scan_logits(model, params, jnp.asarray(segments)))
    for row in range(count):
      k = first + row
      if k == 0:
        logits[:length // size] = out[0]
      else:
        begin = warmup + k * segment_steps
        logits[begin:begin + segment_steps] = out[row, warmup:]
  return logits[:steps]
