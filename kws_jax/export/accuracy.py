"""Accuracy of exported TFLite models on a split, as kws_streaming measures it.

* non-streaming: one invocation per clip;
* streaming "reset1": the state is zeroed before every clip;
* streaming "reset0": one stream over the split's clips in order, the state
  carried from clip to clip.
The prediction of a streamed clip is the argmax after its last block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from kws_jax import data
from kws_jax.evaluate import Accuracy
from kws_jax.export.runtime import TfliteNonStreaming, TfliteStreaming
from kws_jax.models import Model


def load_split(model: Model, dataset: data.SpeechCommands, split: str,
               batch_size: int = 100, layout: Mapping[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
  """Model inputs ``[N, time, ...]`` (audio or features) and labels ``[N]``.

  ``layout``: the clip geometry (``kws_jax.config.clip_layout``).
  """
  model_inputs = jax.jit(model.inputs_from_audio)
  inputs, labels = [], []
  for batch in data.eval_batches(dataset, split, batch_size,
                                 **(layout or {})):
    real = batch['weight'] > 0
    inputs.append(np.asarray(model_inputs(batch['audio'][real])))
    labels.append(batch['label'][real])
  return np.concatenate(inputs), np.concatenate(labels)


def non_streaming_accuracy(path: str, inputs: np.ndarray, labels: np.ndarray
                           ) -> Accuracy:
  model = TfliteNonStreaming(path)
  correct = sum(int(np.argmax(model(x[None])) == label)
                for x, label in zip(inputs, labels))
  return Accuracy(correct, len(labels))


def streaming_accuracy(model: str | Any, inputs: np.ndarray,
                       labels: np.ndarray, block: int, *, reset: bool,
                       on_logits: Callable[[int, np.ndarray], None] | None
                       = None) -> Accuracy:
  """Streams every clip; ``on_logits(clip_index, logits [steps, labels])``.

  ``model``: a streaming TFLite file, or a stream with ``reset()`` and
  ``__call__(block [1, block, ...]) -> logits [labels]``.
  """
  if isinstance(model, str):
    model = TfliteStreaming(model)
  correct = 0
  for index, (x, label) in enumerate(zip(inputs, labels)):
    if reset:
      model.reset()
    logits = np.stack([model(x[None, start:start + block])
                       for start in range(0, x.shape[0] - block + 1, block)])
    if on_logits is not None:
      on_logits(index, logits)
    correct += int(np.argmax(logits[-1]) == label)
  return Accuracy(correct, len(labels))


def tflite_accuracy(path: str, form: str, reset: int | None, inputs_path: str,
                    labels_path: str, block_size: int) -> float:
  """One accuracy (percent) of a TFLite model on inputs and labels in .npy files.

  ``form``: 'non_stream', or a streaming form measured with ``reset`` 1 or 0.
  A worker process of the export calls it (this module imports no
  TensorFlow); the inputs are memory-mapped, not copied.
  """
  inputs = np.load(inputs_path, mmap_mode='r')
  labels = np.load(labels_path)
  if form == 'non_stream':
    result = non_streaming_accuracy(path, inputs, labels)
  else:
    result = streaming_accuracy(path, inputs, labels, block_size,
                                reset=bool(reset))
  return result.accuracy * 100
