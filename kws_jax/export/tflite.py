"""TFLite conversion (float, dynamic-range, full int8) and a builtin-op check.

Every model is converted from its SavedModel with TFLite builtin ops only:
a model that would need Select TF (flex) or custom ops fails the export with
an error naming those ops.

Quantization:
* ``dynamic`` (kws_streaming's ``quantize_opt_for_size``): int8 weights,
  float activations;
* ``int8``: int8 weights and activations of every op with an int8 kernel,
  calibrated on a representative dataset (training clips; for streaming
  models the step inputs *and* the states met while streaming them). The
  model keeps float inputs and outputs. Ops without int8 kernels (the
  frontend's RFFT, magnitude, log) stay float, and so do the ops that feed
  the log: quantizing a magnitude spectrum would erase the quiet bins that
  MFCCs depend on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf

class ExportError(RuntimeError):
  """A model cannot be exported as asked."""


def convert(saved_model_dir: str, quantization: str = 'float', *,
            resource_variables: bool = False) -> bytes:
  """Converts a SavedModel (all its signatures) to a TFLite flatbuffer.

  Args:
    saved_model_dir: the SavedModel.
    quantization: 'float' or 'dynamic' (int8 weights); see ``convert_int8``.
    resource_variables: keep ``tf.Variable`` states (internal-state models).

  Raises:
    ExportError: the model needs non-builtin ops (named), or bad arguments.
  """
  if quantization not in ('float', 'dynamic'):
    raise ExportError(f'quantization is {quantization!r}, expected float or '
                      'dynamic (convert_int8 does int8).')
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  converter.experimental_enable_resource_variables = resource_variables
  if quantization == 'dynamic':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  try:
    flatbuffer = converter.convert()
  except Exception as error:  # the converter raises several types
    ops = sorted(set(re.findall(r"'((?:tf|tfl|stablehlo|chlo|mhlo)\.\w+)'",
                                str(error))))
    raise ExportError(
        f'{saved_model_dir}: TFLite conversion failed'
        + (f'; ops without a TFLite builtin kernel: {", ".join(ops)}'
           if ops else '') + f'. Converter said: {str(error)[-600:]}'
    ) from None
  check_builtin_ops(flatbuffer, saved_model_dir)
  return flatbuffer


def convert_int8(saved_model_dir: str,
                 representative: Callable[[], Iterable[dict[str, np.ndarray]]],
                 float_scopes: Iterable[str] = ('frontend',)) -> bytes:
  """Full int8 quantization, except the ops up to the last of ``float_scopes``.

  The calibrated float model's ops run in execution order; every op up to
  the last one whose output is named inside a JAX scope of ``float_scopes``
  (layer names, see ``Sequential``) stays float, and so do the streaming
  state buffers (``state_node_names``). Calibration runs on
  ``representative``. This is what
  ``tf.lite.experimental.QuantizationDebugger``'s selective quantization
  does: calibrate, then quantize with ``denylisted_nodes``. The names are
  read from the calibrated model itself: a separate conversion of the same
  SavedModel may number its tensors differently.
  """
  from tensorflow.lite.python import convert as tflite_convert  # pylint: disable=g-import-not-at-top
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = representative
  converter.target_spec.supported_ops = [
      tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
  converter._experimental_calibrate_only = True  # pylint: disable=protected-access
  try:
    calibrated = converter.convert()
    keep_float = (float_node_names(calibrated, float_scopes) +
                  state_node_names(calibrated))
    flatbuffer = tflite_convert.mlir_quantize(
        calibrated, denylisted_nodes=keep_float)
  except Exception as error:  # pylint: disable=broad-exception-caught
    raise ExportError(f'{saved_model_dir}: int8 quantization failed: '
                      f'{str(error)[-600:]}') from None
  check_builtin_ops(flatbuffer, saved_model_dir)
  return flatbuffer


def convert_full_int8(
    saved_model_dir: str,
    representative: Callable[[], Iterable[dict[str, np.ndarray]]]) -> bytes:
  """Every tensor integer: int8 inputs, outputs and activations, int8
  per-channel weights, int32 biases, int8 builtin kernels only.

  The converter gives a tensor that a streaming state buffer copies (slices
  and concatenations of ``state_*`` inputs into ``state_*`` outputs) one
  scale throughout, so each state output has its input's quantization;
  ``kws_jax.export.micro.check_full_integer`` verifies that and the rest.

  Raises:
    ExportError: an op without an int8 kernel (named by the converter).
  """
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = representative
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.int8
  converter.inference_output_type = tf.int8
  try:
    flatbuffer = converter.convert()
  except Exception as error:  # pylint: disable=broad-exception-caught
    raise ExportError(f'{saved_model_dir}: full-integer conversion failed: '
                      f'{str(error)[-600:]}') from None
  check_builtin_ops(flatbuffer, saved_model_dir)
  return flatbuffer


def tensor_types(flatbuffer: bytes) -> dict[str, str]:
  """Tensor name -> TFLite type name ('INT8', 'FLOAT32', ...), subgraph 0."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  names = {code: name for name, code in vars(schema.TensorType).items()
           if not name.startswith('_')}
  subgraph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)
  return {subgraph.Tensors(i).Name().decode(): names[subgraph.Tensors(i).Type()]
          for i in range(subgraph.TensorsLength())}


def float_node_names(flatbuffer: bytes, scopes: Iterable[str]) -> list[str]:
  """Output tensor names of the ops up to the last op of ``scopes``."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=flatbuffer)
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  names = [[interpreter._get_tensor_details(t, 0)['name'] for t in op['outputs']]  # pylint: disable=protected-access
           for op in ops]
  markers = [f'/{scope}/' for scope in scopes]
  last = max((i for i, outs in enumerate(names)
              if any(m in name for m in markers for name in outs)),
             default=-1)
  return [name for outs in names[:last + 1] for name in outs]


# Ops that only move state values around (a buffer shift).
BUFFER_OPS = ('CONCATENATION', 'SLICE', 'STRIDED_SLICE', 'RESHAPE')


def state_node_names(flatbuffer: bytes) -> list[str]:
  """Output names of the ops that shift streaming state buffers.

  A buffer is sliced from a ``state_*`` input and concatenated into a
  ``state_*`` output every step. Quantizing it would re-round every frame at
  each step it stays in the buffer (input and output scales differ), so these
  copies stay float; the layers reading the buffer quantize it once. Only
  copies count (``BUFFER_OPS``): a recurrent state is computed anew every
  step, so the matmuls and gates that read or write it quantize as any
  other op.
  """
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=flatbuffer)
  signature = interpreter._get_full_signature_list()['serving_default']  # pylint: disable=protected-access
  state_in = {i for n, i in signature['inputs'].items() if n.startswith('state_')}
  state_out = {i for n, i in signature['outputs'].items()
               if n.startswith('state_')}
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  keep = set()
  for op in ops:
    if op['op_name'] not in BUFFER_OPS:
      continue
    if state_out & set(op['outputs']) or state_in & set(op['inputs']):
      keep.update(op['outputs'])
  return [interpreter._get_tensor_details(t, 0)['name'] for t in sorted(keep)]  # pylint: disable=protected-access


def _operators(flatbuffer: bytes) -> list[tuple[str, bool]]:
  """``(name, is_custom)`` of every operator of every subgraph.

  Read from the flatbuffer itself: the interpreter's op list covers only
  subgraph 0, and an internal-state model computes in another subgraph
  (subgraph 0 holds its variables: VAR_HANDLE, CALL_ONCE, ...). A custom op
  is named by its custom code (Flex ops: ``Flex<TF op>``).
  """
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  builtin_names = {code: name for name, code in vars(
      schema.BuiltinOperator).items() if not name.startswith('_')}
  model = schema.Model.GetRootAs(flatbuffer, 0)
  codes = []
  for i in range(model.OperatorCodesLength()):
    code = model.OperatorCodes(i)
    # Codes below 127 may live in the deprecated 8-bit field only.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
      codes.append(((code.CustomCode() or b'CUSTOM').decode(), True))
    else:
      codes.append((builtin_names.get(builtin, f'BUILTIN_{builtin}'), False))
  return [codes[subgraph.Operators(j).OpcodeIndex()]
          for subgraph in (model.Subgraphs(i)
                           for i in range(model.SubgraphsLength()))
          for j in range(subgraph.OperatorsLength())]


def op_names(flatbuffer: bytes) -> list[str]:
  """The distinct op names of a TFLite model, over all its subgraphs."""
  return sorted({name for name, _ in _operators(flatbuffer)})


def check_builtin_ops(flatbuffer: bytes, what: str) -> None:
  """Raises ExportError naming any Select TF (flex) or custom op, in any subgraph."""
  bad = sorted({name for name, custom in _operators(flatbuffer)
                if custom or name.startswith('Flex')})
  if bad:
    raise ExportError(f'{what}: the TFLite model uses non-builtin ops '
                      f'{", ".join(bad)}; only TFLite builtin ops are allowed.')