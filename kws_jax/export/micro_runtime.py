"""Full-integer streaming models under TensorFlow Lite Micro and LiteRT.

A full-integer streaming model (``kws_jax.export.micro``) takes an int8
feature block and int8 ``state_*`` tensors and returns int8 ``logits`` and
the next ``state_*`` tensors, each state with the same scale and zero point
on both sides, so the caller passes the outputs back unchanged. The zero
state is every state tensor filled with its zero point.

``tflm_stream(flatbuffer)`` runs it under the ``tflite-micro`` wheel's
interpreter (TFLM's reference kernels, no TensorFlow needed);
``litert_stream(flatbuffer)`` under LiteRT. Both return a ``QuantizedStream``
that keeps the states; ``smallest_arena(flatbuffer)`` finds the smallest
tensor arena TFLM runs the model in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

import numpy as np

# Where `kws_jax` imports from, for the probe processes.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

_NUMPY_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64,
                7: np.int16, 9: np.int8}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One signature input or output of a TFLite model.

  ``position`` is its index in the subgraph's input (or output) list, which
  is what TFLM's ``set_input`` / ``get_output`` take.
  """

  name: str
  position: int
  shape: tuple[int, ...]
  dtype: np.dtype
  scale: float
  zero_point: int

  def quantize(self, x: np.ndarray) -> np.ndarray:
    """Float values -> this tensor's integers (round half away from zero,
    as TFLite's QUANTIZE op), saturated to the dtype's range."""
    info = np.iinfo(self.dtype)
    q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
    return np.clip(q, info.min, info.max).astype(self.dtype)

  def dequantize(self, q: np.ndarray) -> np.ndarray:
    return ((np.asarray(q, np.float64) - self.zero_point) *
            self.scale).astype(np.float32)


def _schema():
  try:
    from tflite_micro.runtime import schema_fb  # pylint: disable=g-import-not-at-top
    return schema_fb
  except ImportError:
    from ai_edge_litert import schema_py_generated  # pylint: disable=g-import-not-at-top
    return schema_py_generated


def signature(flatbuffer: bytes, key: str = 'serving_default'
              ) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo]]:
  """``(inputs, outputs)`` of signature ``key``, by name, read from the file."""
  model = _schema().Model.GetRootAs(flatbuffer, 0)
  keys = [model.SignatureDefs(i).SignatureKey().decode()
          for i in range(model.SignatureDefsLength())]
  if key not in keys:
    raise ValueError(f'the TFLite model has no signature {key!r} (it has '
                     f'{", ".join(keys) or "none"}).')
  definition = model.SignatureDefs(keys.index(key))
  subgraph = model.Subgraphs(definition.SubgraphIndex())

  def describe(tensor_maps, length, subgraph_list, list_length):
    positions = {subgraph_list(i): i for i in range(list_length)}
    infos = {}
    for i in range(length):
      entry = tensor_maps(i)
      index = entry.TensorIndex()
      tensor = subgraph.Tensors(index)
      quantization = tensor.Quantization()
      scales = (quantization.ScaleAsNumpy() if quantization is not None and
                quantization.ScaleLength() else np.ones(1))
      zero_points = (quantization.ZeroPointAsNumpy() if quantization is not
                     None and quantization.ZeroPointLength() else np.zeros(1))
      name = entry.Name().decode()
      infos[name] = TensorInfo(
          name=name, position=positions[index],
          shape=tuple(int(d) for d in tensor.ShapeAsNumpy()),
          dtype=np.dtype(_NUMPY_TYPES.get(tensor.Type(), np.float32)),
          scale=float(scales[0]), zero_point=int(zero_points[0]))
    return infos

  inputs = describe(definition.Inputs, definition.InputsLength(),
                    subgraph.Inputs, subgraph.InputsLength())
  outputs = describe(definition.Outputs, definition.OutputsLength(),
                     subgraph.Outputs, subgraph.OutputsLength())
  return inputs, outputs


Invoke = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class QuantizedStream:
  """Streams a full-integer external-state model, keeping its states.

  ``stream(block)`` takes one int8 block ``[1, block, features]`` and
  returns the int8 logits ``[labels]``; ``reset()`` sets every state to its
  zero point (the zero state).
  """

  def __init__(self, invoke: Invoke, inputs: dict[str, TensorInfo],
               outputs: dict[str, TensorInfo]):
    self._invoke = invoke
    self.inputs, self.outputs = inputs, outputs
    self.state_names = sorted(n for n in inputs if n.startswith('state_'))
    features = [n for n in inputs if not n.startswith('state_')]
    if len(features) != 1 or 'logits' not in outputs or set(
        self.state_names) - set(outputs):
      raise ValueError(
          f'not a streaming model with external state: inputs '
          f'{sorted(inputs)}, outputs {sorted(outputs)} (expected one input, '
          'state_* inputs and the same state_* outputs, and logits).')
    self.input = inputs[features[0]]
    self.states: dict[str, np.ndarray] = {}
    self.reset()

  def reset(self) -> None:
    self.states = {n: np.full(self.inputs[n].shape, self.inputs[n].zero_point,
                              self.inputs[n].dtype) for n in self.state_names}

  def __call__(self, block: np.ndarray) -> np.ndarray:
    block = np.asarray(block)
    if block.shape != self.input.shape or block.dtype != self.input.dtype:
      raise ValueError(
          f'input {self.input.name!r} is {block.dtype} {block.shape}, '
          f'expected {self.input.dtype} {self.input.shape} (quantize the '
          f'features with scale {self.input.scale:.6g} and zero point '
          f'{self.input.zero_point}).')
    out = self._invoke({self.input.name: block, **self.states})
    self.states = {n: out[n] for n in self.state_names}
    return out['logits'][0]


@contextlib.contextmanager
def _quiet_stderr(said: list[str] | None = None) -> Iterator[None]:
  """Silences the C++ runtime's messages (file descriptor 2); appends what
  it said to ``said``."""
  saved = os.dup(2)
  try:
    with tempfile.TemporaryFile('w+', encoding='utf-8') as capture:
      os.dup2(capture.fileno(), 2)
      try:
        yield
      finally:
        os.dup2(saved, 2)
        if said is not None:
          capture.seek(0)
          said.append(capture.read())
  finally:
    os.close(saved)


def _tflm_interpreter(flatbuffer: bytes, arena_size: int):
  try:
    from tflite_micro import runtime  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        'running a model under TensorFlow Lite Micro needs the tflite-micro '
        'wheel: pip install tflite-micro') from error
  return runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)


def tflm_stream(flatbuffer: bytes, arena_size: int | None = None
                ) -> QuantizedStream:
  """The model under TFLM with ``arena_size`` bytes (default: ample)."""
  inputs, outputs = signature(flatbuffer)
  with _quiet_stderr():
    interpreter = _tflm_interpreter(
        flatbuffer, arena_size or 10 * len(flatbuffer) + (1 << 20))

  def invoke(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for name, value in values.items():
      interpreter.set_input(value, inputs[name].position)
    interpreter.invoke()
    return {name: np.array(interpreter.get_output(info.position))
            for name, info in outputs.items()}

  return QuantizedStream(invoke, inputs, outputs)


def litert_stream(flatbuffer: bytes, reference: bool = False
                  ) -> QuantizedStream:
  """The model under LiteRT: its optimized builtin kernels (no XNNPACK
  delegate), or with ``reference`` its reference kernels, the closest to
  TFLM's arithmetic."""
  from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(
      model_content=flatbuffer, num_threads=1,
      experimental_op_resolver_type=(
          OpResolverType.BUILTIN_REF if reference else
          OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  runner = interpreter.get_signature_runner('serving_default')
  inputs, outputs = signature(flatbuffer)
  return QuantizedStream(lambda values: runner(**values), inputs, outputs)


def _runs_here(flatbuffer: bytes, arena_size: int,
               said: list[str] | None = None) -> bool:
  """Whether TFLM allocates and invokes the model in ``arena_size`` bytes,
  tried in this process."""
  inputs, _ = signature(flatbuffer)
  try:
    with _quiet_stderr(said):
      interpreter = _tflm_interpreter(flatbuffer, arena_size)
      for info in inputs.values():
        interpreter.set_input(np.full(info.shape, info.zero_point, info.dtype),
                              info.position)
      interpreter.invoke()
  except RuntimeError:
    return False
  return True


# A probe in a child process: TFLM's Python wrapper crashes (SIGSEGV) on
# some arenas too small for a model instead of failing the allocation.
_PROBE = """
import sys
from kws_jax.export.micro_runtime import _runs_here
with open(sys.argv[1], 'rb') as file:
  sys.exit(0 if _runs_here(file.read(), int(sys.argv[2])) else 1)
"""


def _runs(path: str, arena_size: int) -> bool:
  """Whether TFLM runs the model at ``path`` in ``arena_size`` bytes; a
  probe that crashes counts as not running."""
  result = subprocess.run([sys.executable, '-c', _PROBE, path,
                           str(arena_size)], capture_output=True, check=False,
                          cwd=_PACKAGE_ROOT)
  return result.returncode == 0


def recorded_arena(flatbuffer: bytes) -> int:
  """The arena bytes TFLM's recording allocator reports using, with an
  ample arena."""
  said = []
  with _quiet_stderr(said):
    interpreter = _tflm_interpreter(flatbuffer, 10 * len(flatbuffer) + (1 << 20))
    interpreter.print_allocations()
  found = re.search(r'Arena allocation total (\d+) bytes', said[-1])
  if found is None:
    raise RuntimeError('TFLM did not report its arena allocation; it said: '
                       f'{said[-1].strip()[-600:]}')
  return int(found.group(1))


def smallest_arena(flatbuffer: bytes) -> int:
  """The fewest tensor-arena bytes TFLM runs ``flatbuffer`` in.

  Starts from what TFLM's recording allocator reports, and checks in child
  processes that the model runs with that many bytes and not with one
  fewer (bisecting when either check fails). Measured on this 64-bit
  host: TFLM's bookkeeping structs hold pointers, so a 32-bit
  microcontroller needs the same or slightly less.

  Raises:
    RuntimeError: the model does not run even with an ample arena (an op
      TFLM lacks, say), with TFLM's own message.
  """
  high = 10 * len(flatbuffer) + (1 << 20)
  said = []
  if not _runs_here(flatbuffer, high, said):
    raise RuntimeError(f'TFLM cannot run the model even with a {high:,}-byte '
                       f'arena; it said: {said[-1].strip()[-600:]}')
  with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, 'model.tflite')
    with open(path, 'wb') as file:
      file.write(flatbuffer)
    low = 0  # known not to work
    recorded = recorded_arena(flatbuffer)
    if _runs(path, recorded):
      high = recorded
      if not _runs(path, recorded - 1):
        return recorded
    else:
      low = recorded
    while high - low > 1:
      middle = (low + high) // 2
      if _runs(path, middle):
        high = middle
      else:
        low = middle
  return high
