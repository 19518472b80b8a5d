"""Full-integer streaming models for microcontrollers (TensorFlow Lite Micro).

``python -m kws_jax.export --workdir DIR --micro`` writes ``DIR/micro/``:

* ``stream_int8.tflite``: one streaming step with external state. Its
  inputs (a feature block ``[1, block, features]`` and every ``state_*``),
  outputs (``logits`` and the next ``state_*``) and every tensor inside are
  integers: int8 activations and states, int8 per-channel weights, int32
  biases, builtin int8 kernels, no QUANTIZE or DEQUANTIZE op. Each state
  output has its input's scale and zero point, so the device passes it back
  unchanged; the zero state is every state filled with its zero point. The
  features are computed outside the model, as the device does (its
  frontend), and quantized with the input's scale and zero point.
* ``model_data.h`` / ``model_data.cc``: the flatbuffer as a 16-byte aligned
  ``const unsigned char`` array and its length;
* ``example.cc``: the TFLM calls: an op resolver listing exactly the ops
  the model uses, the tensor arena, quantizing a feature block, one step,
  carrying the states.

The manifest's ``micro`` entry holds the tensor arena TFLM needs (the
smallest that works under the ``tflite-micro`` wheel: its recorded
allocation, checked to run and to fail one byte short),
the flash bytes (the flatbuffer), MACs per step, the quantization of every
input and output, the int8 stream's test accuracy (under TFLM, reset1;
under LiteRT's optimized kernels, reset1 and reset0) and how TFLM's outputs compare with LiteRT's
over a test clip. With LiteRT's reference kernels the states are
bit-exact and the logits within one unit (a FULLY_CONNECTED near-tie in
requantization); LiteRT's optimized kernels may also round a dilated
depthwise convolution one unit apart (BC-ResNet), which shifts later
layers by a few units.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from kws_jax.atomic import atomic_write
from kws_jax.export import accuracy, micro_runtime, savedmodel, tflite
from kws_jax.export.micro_runtime import QuantizedStream, TensorInfo
from kws_jax.models import Model

MICRO_FOLDER = 'micro'
MODEL_FILE = 'stream_int8.tflite'
ARRAY_NAME = 'g_kws_model'

# TFLite op -> MicroMutableOpResolver method, where CamelCase of the op's
# name is not the method's name.
_RESOLVER_EXCEPTIONS = {'BATCH_MATMUL': 'AddBatchMatMul',
                        'L2_NORMALIZATION': 'AddL2Normalization',
                        'LOGISTIC': 'AddLogistic'}


def features_model(model: Model) -> Model:
  """``model`` on frontend features (the device computes them): itself, or
  its body with the frontend's frames as input. Same params."""
  if model.preprocess != 'raw':
    return model
  frontend = model.frontend
  return Model(name=model.name, net=model.body,
               input_shape=tuple(frontend.output_shape(())),
               clip_length=frontend.output_length(model.clip_length),
               label_count=model.label_count, frontend=frontend)


# Ops whose int8 kernels requantize to their output tensor's scale and zero
# point (read at Prepare), and read their inputs' own: a computed state's
# quantization may be changed on either side without changing the kernels.
REQUANTIZING_OPS = frozenset({'ADD', 'SUB', 'MUL', 'FULLY_CONNECTED',
                              'CONV_2D', 'DEPTHWISE_CONV_2D', 'BATCH_MATMUL'})


def unify_state_quantization(flatbuffer: bytes
                             ) -> tuple[bytes, list[str]]:
  """Gives each computed state's input and output one quantization.

  Calibration ranges a state input over the states a stream starts its
  steps from and the output over those it ends them with; for a state a
  step computes anew (an LSTM's cell) the two ranges differ slightly and
  the device could not copy the output back. Both tensors take the wider
  of the two, where only requantizing ops (``REQUANTIZING_OPS``) produce
  the output and read the input. Returns the flatbuffer and the states
  changed; a state whose ops cannot take it is left for
  ``check_full_integer`` to name.
  """
  import flatbuffers  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  inputs, outputs = micro_runtime.signature(flatbuffer)
  mismatched = [n for n in inputs if n.startswith('state_') and n in outputs
                and (inputs[n].scale, inputs[n].zero_point) !=
                (outputs[n].scale, outputs[n].zero_point)]
  if not mismatched:
    return flatbuffer, []
  names = {code: name for name, code in vars(schema.BuiltinOperator).items()
           if not name.startswith('_')}
  model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
  definition = next(d for d in model.signatureDefs
                    if d.signatureKey.decode() == 'serving_default')
  subgraph = model.subgraphs[definition.subgraphIndex]
  in_index = {m.name.decode(): m.tensorIndex for m in definition.inputs}
  out_index = {m.name.decode(): m.tensorIndex for m in definition.outputs}

  def op_name(op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return names[max(code.builtinCode, code.deprecatedBuiltinCode)]

  changed = []
  for name in mismatched:
    source, target = in_index[name], out_index[name]
    readers = [op_name(op) for op in subgraph.operators
               if source in list(op.inputs)]
    writers = [op_name(op) for op in subgraph.operators
               if target in list(op.outputs)]
    if not set(readers + writers) <= REQUANTIZING_OPS:
      continue
    tensors = [subgraph.tensors[source], subgraph.tensors[target]]
    spans = [abs(t.quantization.scale[0]) for t in tensors]
    wider = tensors[int(spans[1] > spans[0])].quantization
    for tensor in tensors:
      tensor.quantization.scale = list(wider.scale)
      tensor.quantization.zeroPoint = list(wider.zeroPoint)
    changed.append(name)
  builder = flatbuffers.Builder(len(flatbuffer) + 1024)
  builder.Finish(model.Pack(builder), file_identifier=b'TFL3')
  return bytes(builder.Output()), changed


def check_full_integer(flatbuffer: bytes, what: str
                       ) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo]]:
  """Raises ExportError unless every tensor is an integer, the inputs and
  outputs int8, no op converts to or from float, and every ``state_*``
  output has its input's quantization. Returns the signature."""
  floats = sorted(name for name, kind in tflite.tensor_types(flatbuffer).items()
                  if kind.startswith('FLOAT'))
  if floats:
    raise tflite.ExportError(f'{what}: float tensors remain in the '
                             f'full-integer model: {", ".join(floats[:8])}')
  converting = sorted({op for op in tflite.op_names(flatbuffer)
                       if op in ('QUANTIZE', 'DEQUANTIZE')})
  if converting:
    raise tflite.ExportError(f'{what}: the full-integer model has '
                             f'{", ".join(converting)} ops')
  inputs, outputs = micro_runtime.signature(flatbuffer)
  for name, info in {**inputs, **outputs}.items():
    if info.dtype != np.int8:
      raise tflite.ExportError(f'{what}: {name} is {info.dtype}, expected '
                               'int8')
  for name, info in inputs.items():
    if name.startswith('state_'):
      out = outputs[name]
      if (out.scale, out.zero_point) != (info.scale, info.zero_point):
        raise tflite.ExportError(
            f'{what}: {name} is quantized with scale {info.scale:.6g}, zero '
            f'point {info.zero_point} as input but {out.scale:.6g}, '
            f'{out.zero_point} as output: the device could not feed it back')
  return inputs, outputs


class FloatFacing:
  """A ``QuantizedStream`` seen in float: quantizes the blocks, dequantizes
  the logits (what ``accuracy.streaming_accuracy`` streams)."""

  def __init__(self, stream: QuantizedStream):
    self.stream = stream

  def reset(self) -> None:
    self.stream.reset()

  def __call__(self, block: np.ndarray) -> np.ndarray:
    logits = self.stream(self.stream.input.quantize(block))
    return self.stream.outputs['logits'].dequantize(logits)


def compare_runtimes(flatbuffer: bytes, clip: np.ndarray, block: int,
                     arena_size: int) -> dict[str, Any]:
  """Streams ``clip [frames, features]`` through TFLM and LiteRT, step by step.

  Every step starts all runtimes from TFLM's state. For LiteRT's reference
  kernels and for its optimized ones: the steps whose logits or states
  differ from TFLM's and the largest differences (int8 units). Also
  TFLM's median milliseconds per step on this host.
  """
  tflm = micro_runtime.tflm_stream(flatbuffer, arena_size)
  others = {'litert_reference': micro_runtime.litert_stream(flatbuffer, True),
            'litert_optimized': micro_runtime.litert_stream(flatbuffer)}
  counts = {name: {'steps_with_different_logits': 0,
                   'steps_with_different_states': 0,
                   'max_logit_diff_int8_units': 0,
                   'max_state_diff_int8_units': 0} for name in others}
  times = []
  steps = clip.shape[0] // block
  for i in range(steps):
    q = tflm.input.quantize(clip[None, i * block:(i + 1) * block])
    states = dict(tflm.states)
    start = time.perf_counter()
    expected = tflm(q).astype(np.int32)
    times.append(time.perf_counter() - start)
    for name, other in others.items():
      other.states = dict(states)
      diff = int(np.max(np.abs(other(q).astype(np.int32) - expected)))
      count = counts[name]
      count['steps_with_different_logits'] += diff > 0
      count['max_logit_diff_int8_units'] = max(
          count['max_logit_diff_int8_units'], diff)
      state_diff = max((int(np.max(np.abs(
          tflm.states[n].astype(np.int32) - other.states[n].astype(np.int32))))
                        for n in tflm.state_names), default=0)
      count['steps_with_different_states'] += state_diff > 0
      count['max_state_diff_int8_units'] = max(
          count['max_state_diff_int8_units'], state_diff)
  return {'steps': steps, **counts,
          'tflm_ms_per_step_host': 1000 * float(np.median(times))}


def resolver_method(op: str) -> str:
  """``MicroMutableOpResolver`` method that registers TFLite op ``op``."""
  if op in _RESOLVER_EXCEPTIONS:
    return _RESOLVER_EXCEPTIONS[op]
  return 'Add' + ''.join(part if part[0].isdigit() else part.capitalize()
                         for part in op.split('_'))


def c_files(flatbuffer: bytes, ops: Iterable[str], arena_bytes: int,
            inputs: dict[str, TensorInfo], outputs: dict[str, TensorInfo]
            ) -> dict[str, str]:
  """``model_data.h``, ``model_data.cc`` and ``example.cc``."""
  rows = [', '.join(f'0x{byte:02x}' for byte in flatbuffer[i:i + 12])
          for i in range(0, len(flatbuffer), 12)]
  header = (
      '// The kws_jax full-integer streaming model (generated).\n'
      '#ifndef KWS_MODEL_DATA_H_\n#define KWS_MODEL_DATA_H_\n\n'
      f'extern const unsigned char {ARRAY_NAME}[];\n'
      f'extern const unsigned int {ARRAY_NAME}_len;\n\n#endif\n')
  source = (
      '// The kws_jax full-integer streaming model (generated).\n'
      '#include "model_data.h"\n\n'
      f'alignas(16) const unsigned char {ARRAY_NAME}[] = {{\n  '
      + ',\n  '.join(rows) + '\n};\n'
      f'const unsigned int {ARRAY_NAME}_len = {len(flatbuffer)};\n')
  ops = sorted(ops)
  states = sorted(n for n in inputs if n.startswith('state_'))
  feature = next(info for n, info in inputs.items() if n not in states)
  state_bytes = sum(int(np.prod(inputs[n].shape)) for n in states)
  lines = [
      '// One streaming step of the kws_jax model under TensorFlow Lite Micro.',
      '// Input and output positions follow the model\'s subgraph; every',
      '// state output is copied back to its input after each step.',
      '#include <cmath>', '#include <cstdint>', '#include <cstring>', '',
      '#include "model_data.h"',
      '#include "tensorflow/lite/micro/micro_interpreter.h"',
      '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
      '#include "tensorflow/lite/schema/schema_generated.h"', '',
      f'constexpr int kTensorArenaSize = {arena_bytes};  // measured on the '
      'host', 'alignas(16) static uint8_t tensor_arena[kTensorArenaSize];', '',
      f'constexpr float kFeatureScale = {feature.scale!r}f;',
      f'constexpr int kFeatureZeroPoint = {feature.zero_point};',
      f'constexpr float kLogitScale = {outputs["logits"].scale!r}f;',
      f'constexpr int kLogitZeroPoint = {outputs["logits"].zero_point};', '',
      '// (input position, output position, zero point) of every state.',
      'struct StateLink { int input, output, zero_point; };',
      f'constexpr StateLink kStates[] = {{' + ', '.join(
          f'{{{inputs[n].position}, {outputs[n].position}, '
          f'{inputs[n].zero_point}}}' for n in states) + '};',
      f'constexpr int kStateBytes = {state_bytes};',
      'static int8_t state_scratch[kStateBytes > 0 ? kStateBytes : 1];',
      f'constexpr int kFeatureInput = {feature.position};',
      f'constexpr int kLogitsOutput = {outputs["logits"].position};', '',
      f'using OpResolver = tflite::MicroMutableOpResolver<{len(ops)}>;', '',
      'tflite::MicroInterpreter* CreateInterpreter() {',
      '  static OpResolver resolver;',
      *[f'  resolver.{resolver_method(op)}();' for op in ops],
      '  static tflite::MicroInterpreter interpreter(',
      f'      tflite::GetModel({ARRAY_NAME}), resolver, tensor_arena,',
      '      kTensorArenaSize);',
      '  if (interpreter.AllocateTensors() != kTfLiteOk) return nullptr;',
      '  for (const StateLink& s : kStates) {  // the zero state',
      '    TfLiteTensor* t = interpreter.input(s.input);',
      '    memset(t->data.int8, s.zero_point, t->bytes);',
      '  }',
      '  return &interpreter;', '}', '',
      f'// features: {feature.shape[1]} frame(s) of {feature.shape[2]} '
      'float features, as the device frontend computes them.',
      'bool Step(tflite::MicroInterpreter* interpreter, const float* features,',
      '          float* logits) {',
      '  TfLiteTensor* in = interpreter->input(kFeatureInput);',
      '  for (size_t i = 0; i < in->bytes; ++i) {',
      '    int q = static_cast<int>(std::lround(features[i] / kFeatureScale)) +',
      '            kFeatureZeroPoint;',
      '    in->data.int8[i] = static_cast<int8_t>(q < -128 ? -128 : '
      'q > 127 ? 127 : q);',
      '  }',
      '  if (interpreter->Invoke() != kTfLiteOk) return false;',
      '  const TfLiteTensor* out = interpreter->output(kLogitsOutput);',
      '  for (size_t i = 0; i < out->bytes; ++i) {',
      '    logits[i] = (out->data.int8[i] - kLogitZeroPoint) * kLogitScale;',
      '  }',
      '  // Carry the states over, through a scratch copy: the arena planner',
      '  // may reuse one state input\'s memory for another state\'s output.',
      '  int8_t* scratch = state_scratch;',
      '  for (const StateLink& s : kStates) {',
      '    const TfLiteTensor* t = interpreter->output(s.output);',
      '    memcpy(scratch, t->data.int8, t->bytes);',
      '    scratch += t->bytes;',
      '  }',
      '  scratch = state_scratch;',
      '  for (const StateLink& s : kStates) {',
      '    TfLiteTensor* t = interpreter->input(s.input);',
      '    memcpy(t->data.int8, scratch, t->bytes);',
      '    scratch += t->bytes;',
      '  }',
      '  return true;', '}', '']
  return {'model_data.h': header, 'model_data.cc': source,
          'example.cc': '\n'.join(lines)}


@dataclasses.dataclass(frozen=True)
class Budget:
  """Size limits a device imposes (None: no limit)."""

  max_arena_bytes: int | None = None
  max_flash_bytes: int | None = None

  def check(self, arena_bytes: int, flash_bytes: int) -> None:
    """Raises ExportError naming every figure over its limit."""
    over = []
    if self.max_arena_bytes is not None and arena_bytes > self.max_arena_bytes:
      over.append(f'a {arena_bytes:,}-byte tensor arena (limit '
                  f'--max-arena-bytes {self.max_arena_bytes:,})')
    if self.max_flash_bytes is not None and flash_bytes > self.max_flash_bytes:
      over.append(f'{flash_bytes:,} bytes of flash (limit --max-flash-bytes '
                  f'{self.max_flash_bytes:,})')
    if over:
      raise tflite.ExportError(
          'the full-integer model does not fit the device: it needs '
          + ' and '.join(over) + '; choose a smaller model (fewer filters or '
          'units), or raise the limit.')


def export_micro(out_dir: str, model: Model, params: Any,
                 representative: Callable[[Model, np.ndarray], Callable],
                 calibration: np.ndarray, test_inputs: np.ndarray,
                 test_labels: np.ndarray, budget: Budget = Budget()
                 ) -> dict[str, Any]:
  """Writes ``out_dir/micro/`` (see the module doc); returns its manifest entry.

  Args:
    out_dir: the export directory.
    model, params: the trained model (BatchNorm folded) and its weights.
    representative: ``(model, clips) -> representative dataset`` of the
      external-state step (``pipeline.representative_dataset``).
    calibration: feature clips ``[n, frames, features]`` that calibrate it.
    test_inputs, test_labels: feature clips and labels of the test split.
    budget: the device's limits; nothing is written if the model exceeds
      them.

  Raises:
    tflite.ExportError: a model that is not full-integer, does not stream,
      or does not fit ``budget``.
  """
  if not model.supports_step:
    raise tflite.ExportError(f'{model.name} cannot stream, so it has no '
                             'microcontroller form.')
  model = features_model(model)
  what = f'{MICRO_FOLDER}/{MODEL_FILE}'
  with tempfile.TemporaryDirectory() as scratch:
    savedmodel.save('stream_state_external', model, params, scratch)
    flatbuffer = tflite.convert_full_int8(
        scratch, representative(model, calibration))
  flatbuffer, unified = unify_state_quantization(flatbuffer)
  inputs, outputs = check_full_integer(flatbuffer, what)
  arena = micro_runtime.smallest_arena(flatbuffer)
  budget.check(arena, len(flatbuffer))
  ops = tflite.op_names(flatbuffer)
  runtimes = compare_runtimes(flatbuffer, test_inputs[0], model.block_size,
                              arena)
  # The device's figure (TFLM, state zeroed per clip) and LiteRT's (faster,
  # so it also carries the state across the split).
  measured = {}
  for key, stream, reset in (
      ('tflm_reset1', micro_runtime.tflm_stream(flatbuffer, arena), True),
      ('litert_reset1', micro_runtime.litert_stream(flatbuffer), True),
      ('litert_reset0', micro_runtime.litert_stream(flatbuffer), False)):
    measured[key] = 100 * accuracy.streaming_accuracy(
        FloatFacing(stream), test_inputs, test_labels, model.block_size,
        reset=reset).accuracy
  folder = os.path.join(out_dir, MICRO_FOLDER)
  with atomic_write(os.path.join(folder, MODEL_FILE)) as file:
    file.write(flatbuffer)
  for name, text in c_files(flatbuffer, ops, arena, inputs, outputs).items():
    with atomic_write(os.path.join(folder, name), 'w') as file:
      file.write(text)
  return {
      'file': what,
      'flash_bytes': len(flatbuffer),
      'arena_bytes': arena,
      'macs_per_step': int(model.net.step_macs(model.input_shape)),
      'ops': ops,
      'inputs': {n: _quantization(i) for n, i in inputs.items()},
      'outputs': {n: _quantization(i) for n, i in outputs.items()},
      'accuracy_test_split': measured,
      'tflm_vs_litert': runtimes,
      'states_given_one_quantization': unified,
  }


def _quantization(info: TensorInfo) -> dict[str, Any]:
  return {'shape': list(info.shape), 'dtype': str(info.dtype),
          'scale': info.scale, 'zero_point': info.zero_point}
