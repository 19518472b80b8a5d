"""Running exported TFLite models with the LiteRT interpreter.

``TfliteNonStreaming(path)(clip)`` returns the logits of one clip;
``TfliteStreaming(path)(block)`` those of the window ending with a 20 ms
block, keeping the state itself: passed in and out of an external-state
model by name (``state_<name>``), or left in an internal-state model's
variables (``reset()`` then calls its ``reset`` signature).
"""

from __future__ import annotations

import numpy as np


def _interpreter(model: str | bytes, num_threads: int):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  if isinstance(model, bytes):
    return Interpreter(model_content=model, num_threads=num_threads)
  return Interpreter(model_path=model, num_threads=num_threads)


class _Signature:
  """The ``serving_default`` signature, with its inputs checked by name."""

  def __init__(self, model: str | bytes, num_threads: int):
    self.interpreter = _interpreter(model, num_threads)
    self.runner = self.interpreter.get_signature_runner('serving_default')
    self.inputs = {name: (tuple(int(n) for n in d['shape']),
                         np.dtype(d['dtype']))
                   for name, d in self.runner.get_input_details().items()}
    self.input_name = next(n for n in self.inputs if not n.startswith('state_'))

  def check(self, name: str, value: np.ndarray) -> np.ndarray:
    shape, dtype = self.inputs[name]
    value = np.asarray(value)
    if value.shape != shape:
      raise ValueError(f'TFLite input {name!r} has shape {value.shape}, '
                       f'expected {shape}.')
    if np.issubdtype(dtype, np.floating) and not np.issubdtype(
        value.dtype, np.floating):
      # Casting int16 samples would feed values 32768 times too large.
      raise ValueError(
          f'TFLite input {name!r} has dtype {value.dtype}, expected a float '
          'array (audio in [-1, 1]: int16 samples divided by 32768).')
    return value.astype(dtype, copy=False)


class TfliteNonStreaming:
  """A ``non_stream.tflite``: one clip ``[1, clip, ...]`` -> logits ``[labels]``."""

  def __init__(self, model: str | bytes, num_threads: int = 1):
    self._signature = _Signature(model, num_threads)

  def __call__(self, inputs: np.ndarray) -> np.ndarray:
    name = self._signature.input_name
    out = self._signature.runner(**{name: self._signature.check(name, inputs)})
    return out['logits'][0]


class TfliteStreaming:
  """A streaming TFLite model: one block ``[1, block, ...]`` -> logits ``[labels]``."""

  def __init__(self, model: str | bytes, num_threads: int = 1):
    self._signature = _Signature(model, num_threads)
    self.state_names = sorted(n for n in self._signature.inputs
                              if n.startswith('state_'))
    self.internal = not self.state_names
    signatures = self._signature.interpreter.get_signature_list()
    if self.internal and 'reset' not in signatures:
      name = 'the model' if isinstance(model, bytes) else model
      inputs = ', '.join(f'{n} {list(shape)}' for n, (shape, _) in
                         self._signature.inputs.items())
      raise ValueError(
          f'{name} is not a streaming model: it has no state_* inputs and no '
          f'reset signature (inputs: {inputs}). Stream a '
          'tflite_stream_state_external or tflite_stream_state_internal '
          'model, or run this one on whole clips with TfliteNonStreaming.')
    self._reset = (self._signature.interpreter.get_signature_runner('reset')
                   if self.internal else None)
    self.states: dict[str, np.ndarray] = {}
    self.reset()

  def reset(self) -> None:
    """Zeroes the state (both kinds)."""
    if self._reset is not None:
      self._reset()
    self.states = {name: np.zeros(*self._signature.inputs[name])
                   for name in self.state_names}

  def __call__(self, block: np.ndarray) -> np.ndarray:
    name = self._signature.input_name
    states = {n: self._signature.check(n, v) for n, v in self.states.items()}
    out = self._signature.runner(**{name: self._signature.check(name, block)},
                                 **states)
    self.states = {n: out[n] for n in self.state_names}
    return out['logits'][0]
