"""Streaming runners: one block of audio in, the logits of the latest window out.

A runner hides what computes the logits (JAX here; TFLite in the export
stage) behind one small protocol, so the detector and its evaluation do not
care which form of the model they stream.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.models import Model, streaming


class StreamingRunner(Protocol):
  """A streaming keyword model behind a block-at-a-time interface.

  Attributes:
    labels: the model's output classes in logit order, e.g. ('_silence_',
      '_unknown_', 'yes', ...).
    sample_rate: samples per second the model expects (16000).
    block_samples: samples one call consumes (320 = 20 ms at 16 kHz).
  """

  labels: tuple[str, ...]
  sample_rate: int
  block_samples: int

  def reset(self) -> None:
    """Starts a new stream: the state goes back to zeros."""

  def __call__(self, block: np.ndarray) -> np.ndarray:
    """``block`` float32 ``[block_samples]`` -> logits float32 ``[len(labels)]``.

    The logits are those of the clip-long window that ends with ``block``.
    Until a stream has seen one clip, the window's start is the zero state.
    """


def read_labels(workdir: str, count: int) -> tuple[str, ...]:
  """The ``count`` labels of ``workdir/labels.txt`` (one per line), in order.

  Raises:
    FileNotFoundError: the file is missing.
    ValueError: it does not list ``count`` labels.
  """
  path = os.path.join(workdir, 'labels.txt')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no such file; the training run writes '
                            'it next to config.json.')
  with open(path, encoding='utf-8') as file:
    labels = tuple(line.strip() for line in file if line.strip())
  if len(labels) != count:
    raise ValueError(f'{path} lists {len(labels)} labels, but the model has '
                     f'{count} outputs.')
  return labels


@functools.partial(jax.jit, static_argnums=0)
def _step(model: Model, params: Any, state: Any, block: jax.Array
          ) -> tuple[Any, jax.Array]:
  """One model step on ``block [1, block_samples]``: logits ``[labels]``."""
  state, logits = streaming.audio_step(model, params, state, block)
  return state, logits[0]


class JaxRunner:
  """Streams a ``Model`` with its jitted ``step`` at batch 1.

  Raw-audio models step on ``[1, block_samples]`` samples. Feature models
  chain the frontend's own step (its state ``frontend.init_state(1)``) with
  the network's step on the resulting ``[1, block_size, F]`` frames, so
  ``block_samples = frontend stride * network block_size``.
  """

  def __init__(self, model: Model, params: Any, labels: tuple[str, ...]):
    if len(labels) != model.label_count:
      raise ValueError(f'{len(labels)} labels {labels} for a model with '
                       f'{model.label_count} outputs.')
    # Committed to one device, like the step's outputs: an uncommitted first
    # state would compile the step a second time.
    self._device = jax.devices()[0]
    self.model = model
    self.params = jax.device_put(params, self._device)
    self.labels = tuple(labels)
    self.sample_rate = model.frontend.sample_rate
    self.block_samples = streaming.block_samples(model)
    self.reset()

  @classmethod
  def from_workdir(cls, workdir: str, which: str = 'best') -> JaxRunner:
    """The ``which`` ('best' or 'last') checkpoint of a training run.

    Raises:
      FileNotFoundError: no run, no checkpoint or no labels.txt in ``workdir``.
    """
    # Imported here: orbax and optax are not needed to stream a given model.
    from kws_jax.train import load_run  # pylint: disable=g-import-not-at-top
    _, model, params = load_run(workdir, which)
    return cls(model, params, read_labels(workdir, model.label_count))

  def reset(self) -> None:
    self._state = jax.device_put(streaming.init_audio_state(self.model, 1),
                                 self._device)

  def __call__(self, block: np.ndarray) -> np.ndarray:
    block = np.asarray(block)
    if block.shape != (self.block_samples,) or block.dtype != np.float32:
      raise ValueError(
          f'{self.model.name}: audio block of shape {block.shape} and dtype '
          f'{block.dtype}, expected ({self.block_samples},) float32.')
    self._state, logits = _step(self.model, self.params, self._state,
                                jnp.asarray(block[None]))
    return np.asarray(logits)


def check_manifest_entry(manifest: dict, manifest_path: str, path: str) -> None:
  """Refuses a model file that ``manifest.json`` does not describe.

  The export records each file's SHA-256; an export killed midway, or run
  again over an older one, may leave a manifest beside model files it does
  not describe (labels in another order, another label count).

  Raises:
    ValueError: the file is not in the manifest, or its bytes differ.
  """
  export_dir = os.path.dirname(manifest_path)
  name = os.path.relpath(os.path.abspath(path), export_dir)
  entries = {entry['file']: entry
             for entry in manifest.get('tflite', {}).values()}
  if name not in entries:
    raise ValueError(f'{path} is not among the models of {manifest_path} '
                     f'({", ".join(sorted(entries)) or "none"}); export '
                     'again: python -m kws_jax.export --workdir ...')
  expected = entries[name].get('sha256')
  if expected is None:
    return  # a manifest written before checksums: nothing to compare
  with open(path, 'rb') as file:
    actual = hashlib.sha256(file.read()).hexdigest()
  if actual != expected:
    raise ValueError(
        f'{path} does not match {manifest_path} (SHA-256 {actual[:12]}..., '
        f'the manifest has {expected[:12]}...): an export was interrupted or '
        'repeated over another; export again: python -m kws_jax.export '
        '--workdir ...')


class TfliteRunner:
  """Streams an exported streaming ``.tflite`` (external or internal state).

  Reads ``manifest.json`` from the export directory (the model folder's
  parent) for the labels, the sample rate and the input. A raw-audio model
  takes the block itself; a feature model is fed frames of its frontend
  (MFCC or micro) rebuilt from the manifest and stepped in JAX.
  """

  def __init__(self, path: str):
    import json  # pylint: disable=g-import-not-at-top
    from kws_jax.export.runtime import TfliteStreaming  # pylint: disable=g-import-not-at-top
    from kws_jax.frontend import MfccFrontend  # pylint: disable=g-import-not-at-top
    from kws_jax.micro_frontend import MicroFrontend  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(path):
      raise FileNotFoundError(f'{path}: no such TFLite model.')
    manifest_path = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(path))), 'manifest.json')
    if not os.path.isfile(manifest_path):
      raise FileNotFoundError(
          f'{manifest_path}: not found; a streaming .tflite is run with the '
          'manifest.json that python -m kws_jax.export writes beside its '
          'folder.')
    with open(manifest_path, encoding='utf-8') as file:
      manifest = json.load(file)
    check_manifest_entry(manifest, manifest_path, path)
    self._model = TfliteStreaming(path)
    self.labels = tuple(manifest['labels'])
    self.sample_rate = int(manifest['sample_rate'])
    step_frames = manifest['stream']['input']['shape'][1]
    self._frontend = None
    frontends = {'mfcc': MfccFrontend, 'micro': MicroFrontend}
    if manifest['preprocess'] in frontends:
      self._frontend = frontends[manifest['preprocess']](**manifest['frontend'])
      self.block_samples = self._frontend.stride_samples * step_frames
      self._frontend_step = jax.jit(self._frontend.step)
    else:
      self.block_samples = step_frames
    self.reset()

  def reset(self) -> None:
    self._model.reset()
    if self._frontend is not None:
      self._frontend_state = self._frontend.init_state(1)

  def __call__(self, block: np.ndarray) -> np.ndarray:
    block = np.asarray(block)
    if block.shape != (self.block_samples,) or not np.issubdtype(
        block.dtype, np.floating):
      raise ValueError(
          f'audio block of shape {block.shape} and dtype {block.dtype}, '
          f'expected ({self.block_samples},) float (in [-1, 1]; int16 '
          'samples divided by 32768).')
    block = block.astype(np.float32, copy=False)
    if self._frontend is None:
      return self._model(block[None])
    stride = self._frontend.stride_samples
    frames = []
    for start in range(0, self.block_samples, stride):
      self._frontend_state, frame = self._frontend_step(
          {}, self._frontend_state, jnp.asarray(block[None, start:start + stride]))
      frames.append(np.asarray(frame))
    return self._model(np.concatenate(frames, axis=1))


def tflite_runner(path: str) -> StreamingRunner:
  """A runner for an exported streaming ``.tflite`` model (see TfliteRunner)."""
  return TfliteRunner(path)
