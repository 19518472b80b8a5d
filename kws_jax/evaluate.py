"""Accuracy of a trained model run non-streaming and streaming, in JAX.

Streaming feeds each clip to ``model.step`` 20 ms at a time and takes the
argmax of the logits after the clip's last block, as kws_streaming does:

* ``reset=True`` ("reset1"): every clip starts from a zero state;
* ``reset=False`` ("reset0"): the state is carried from one clip to the
  next. To use a batch, the split's clips (in order) are dealt into
  ``batch_size`` contiguous runs, each one stream.

For the CNN the receptive field is exactly one clip, so both equal the
non-streaming accuracy; recurrent models differ.

``layout`` is the clip geometry of the run (``kws_jax.config.clip_layout``:
clip length, the length files are fit to, sample rate); the default is 1 s
clips at 16 kHz.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax import data
from kws_jax.layers import scan_steps
from kws_jax.models import Model


@dataclasses.dataclass(frozen=True)
class Accuracy:
  """Correct predictions of a split, and the largest logit difference seen."""

  correct: int
  count: int
  max_logit_diff: float | None = None  # streaming vs non-streaming

  @property
  def accuracy(self) -> float:
    return self.correct / self.count


def model_input(model: Model, audio: jax.Array) -> jax.Array:
  """What the model takes: audio, or features from its frontend."""
  return model.inputs_from_audio(audio)


@functools.partial(jax.jit, static_argnums=0)
def _non_streaming(model: Model, params: Any, audio: jax.Array) -> jax.Array:
  return model.logits(params, model_input(model, audio))


@functools.partial(jax.jit, static_argnums=0)
def _streaming(model: Model, params: Any, state: Any, audio: jax.Array
               ) -> tuple[Any, jax.Array]:
  inputs = model_input(model, audio)
  # A clip that is not whole steps (1 s in 80 ms steps) streams its whole
  # steps, which is what the full-window form reads of it too (and what the
  # TFLite accuracy streams).
  whole = inputs.shape[1] // model.block_size * model.block_size
  state, logits = scan_steps(model, params, inputs[:, :whole], state)
  return state, logits[:, -1]


Layout = Mapping[str, Any] | None


def _batches(dataset: data.SpeechCommands, split: str, batch_size: int,
             layout: Layout) -> Iterator[dict[str, np.ndarray]]:
  return data.eval_batches(dataset, split, batch_size, **(layout or {}))


def non_streaming_accuracy(model: Model, params: Any,
                           dataset: data.SpeechCommands, split: str = 'testing',
                           batch_size: int = 100, *, layout: Layout = None
                           ) -> Accuracy:
  """Accuracy of the full-window model on the split's clips."""
  correct = count = 0
  for batch in _batches(dataset, split, batch_size, layout):
    logits = _non_streaming(model, params, jnp.asarray(batch['audio']))
    real = batch['weight'] > 0
    correct += int(np.sum((np.argmax(logits, -1) == batch['label'])[real]))
    count += int(np.sum(real))
  return Accuracy(correct, count)


def streaming_accuracy(model: Model, params: Any,
                       dataset: data.SpeechCommands, split: str = 'testing',
                       batch_size: int = 100, *, reset: bool = True,
                       layout: Layout = None) -> Accuracy:
  """Accuracy when every clip is streamed 20 ms at a time (see module doc).

  With ``reset=True`` it also reports the largest difference between the
  streamed and the non-streaming logits.
  """
  if reset:
    return _streaming_reset(model, params, dataset, split, batch_size, layout)
  examples = dataset.split(split)
  streams = min(batch_size, len(examples))
  length = -(-len(examples) // streams)  # clips per stream
  audio, labels = _load_split(dataset, split, batch_size, layout)
  order = np.arange(streams * length).reshape(streams, length)
  state = model.init_state(streams)
  correct = count = 0
  for position in range(length):
    rows = order[:, position]
    valid = rows < len(labels)
    rows = np.where(valid, rows, 0)
    state, logits = _streaming(model, params, state, jnp.asarray(audio[rows]))
    predicted = np.argmax(logits, -1)
    correct += int(np.sum((predicted == labels[rows])[valid]))
    count += int(np.sum(valid))
  return Accuracy(correct, count)


def _streaming_reset(model, params, dataset, split, batch_size, layout
                     ) -> Accuracy:
  correct = count = 0
  max_diff = 0.0
  for batch in _batches(dataset, split, batch_size, layout):
    audio = jnp.asarray(batch['audio'])
    state = model.init_state(audio.shape[0])
    _, logits = _streaming(model, params, state, audio)
    reference = _non_streaming(model, params, audio)
    real = batch['weight'] > 0
    max_diff = max(max_diff, float(jnp.max(jnp.abs(logits - reference)[real])))
    correct += int(np.sum((np.argmax(logits, -1) == batch['label'])[real]))
    count += int(np.sum(real))
  return Accuracy(correct, count, max_diff)


def _load_split(dataset: data.SpeechCommands, split: str, batch_size: int,
                layout: Layout) -> tuple[np.ndarray, np.ndarray]:
  """All clips of a split, in order: audio ``[N, samples]``, labels ``[N]``."""
  audio, labels = [], []
  for batch in _batches(dataset, split, batch_size, layout):
    real = batch['weight'] > 0
    audio.append(batch['audio'][real])
    labels.append(batch['label'][real])
  return np.concatenate(audio), np.concatenate(labels)
