"""Wake-word models for ESPHome's ``micro_wake_word`` (microWakeWord v2 format).

``python -m kws_jax.export --workdir DIR --esphome`` writes ``DIR/esphome/``:
``<wake_word>.tflite`` and the manifest ``<wake_word>.json`` that ESPHome's
``micro_wake_word: models: - model: <wake_word>.json`` loads.

What ESPHome runs, and so what the model must be (checked here, each
mismatch an ``ExportError`` that names it):

* features: ESPHome computes TFLM's micro frontend (30 ms windows every
  10 ms, 40 channels, its noise reduction, PCAN and log settings, which are
  ``MicroFrontend(window_stride_ms=10)``) and quantizes its uint16 output
  ``v`` to int8 as ``(256 v + 333) // 666 - 128``, clamped
  (``esphome_features``): the model's input is int8 ``[1, stride, 40]``
  with scale 26/256 and zero point -128 (a float feature ``v 10/256`` in
  ``[0, 25.9]``), pinned here rather than calibrated;
* one invocation per ``stride`` feature slices (the model's block), its
  state kept inside the model in resource variables (VAR_HANDLE,
  READ_VARIABLE, ASSIGN_VARIABLE, CALL_ONCE; ESPHome registers at most 20);
* output: one uint8 ``[1, 1]`` probability of the wake word (scale 1/256);
* ops: only the 20 ESPHome's op resolver registers (``ESPHOME_OPS``): no
  SOFTMAX, TANH, SLICE, SUB, so no GRU or LSTM and no softmax head;
* detection: the mean of the last ``sliding_window_size`` probabilities
  (uint8 / 255) above ``probability_cutoff`` (ESPHome truncates the cutoff
  to uint8: ``int(cutoff * 255)``).

The probability is ``keyword_probability``: sigmoid of the keyword logit's
margin over the strongest other label, ``sigmoid(l_k - max_j l_j)``, an
op ESPHome has for every part (a FULLY_CONNECTED for the differences,
MAX_POOL_2D for the max, LOGISTIC). For a two-label model it is exactly the
softmax probability; with ``_silence_`` and ``_unknown_`` it lies between
the softmax probability and that of "keyword against the runner-up alone".
The cutoff is therefore chosen on this probability (the wake-word recipe
sweeps it on its validation streams); a run without one takes its float
operating point, and the manifest says which.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kws_jax import micro_frontend
from kws_jax.atomic import atomic_write, write_json
from kws_jax.export import forms, micro, micro_runtime, tflite
from kws_jax.export.micro_runtime import TensorInfo
from kws_jax.models import Model

ESPHOME_FOLDER = 'esphome'
FEATURES = 40
FEATURE_STEP_MS = 10
FEATURE_SCALE = 26.0 / 256.0  # 0.1015625
FEATURE_ZERO_POINT = -128
FEATURE_MAX = 255 * FEATURE_SCALE  # 25.8984375, int8 127
PROBABILITY_SCALE = 1.0 / 256.0
MAX_RESOURCE_VARIABLES = 20
MINIMUM_ESPHOME_VERSION = '2024.7.0'
MANIFEST_VERSION = 2
# The op resolver of ESPHome's micro_wake_word streaming models.
ESPHOME_OPS = frozenset({
    'CALL_ONCE', 'VAR_HANDLE', 'RESHAPE', 'READ_VARIABLE', 'STRIDED_SLICE',
    'CONCATENATION', 'ASSIGN_VARIABLE', 'CONV_2D', 'MUL', 'ADD', 'MEAN',
    'FULLY_CONNECTED', 'LOGISTIC', 'QUANTIZE', 'DEPTHWISE_CONV_2D',
    'AVERAGE_POOL_2D', 'MAX_POOL_2D', 'PAD', 'PACK', 'SPLIT_V'})
# Frontend fields that do not change the features a streaming device sees.
_FRONTEND_FIELDS_IGNORED = ('name', 'padding')


def esphome_frontend() -> micro_frontend.MicroFrontend:
  """The frontend ESPHome computes on the device."""
  return micro_frontend.MicroFrontend(window_stride_ms=float(FEATURE_STEP_MS))


def keyword_index(labels: Sequence[str]) -> int:
  """The one wake word among ``labels`` (the others ``_silence_`` /
  ``_unknown_`` or other non-keyword classes)."""
  keywords = [i for i, label in enumerate(labels) if not label.startswith('_')]
  if len(keywords) != 1:
    raise tflite.ExportError(
        f'an ESPHome model detects one wake word; the labels '
        f'{list(labels)} have {len(keywords)} keywords '
        f'({", ".join(labels[i] for i in keywords) or "none"}); train with '
        'one --config.data.wanted_words.')
  return keywords[0]


def check_model(model: Model) -> None:
  """Raises ExportError unless ``model`` streams on ESPHome's features."""
  problems = []
  if not model.supports_step:
    problems.append(f'{model.name} cannot stream')
  if model.preprocess != 'micro':
    problems.append(f"model.preprocess is {model.preprocess!r}, expected "
                    "'micro' (ESPHome computes TFLM's micro frontend)")
  else:
    expected = esphome_frontend()
    for field in dataclasses.fields(micro_frontend.MicroFrontend):
      if field.name in _FRONTEND_FIELDS_IGNORED:
        continue
      have, want = (getattr(model.frontend, field.name),
                    getattr(expected, field.name))
      if have != want:
        problems.append(f'frontend.{field.name} is {have!r}, ESPHome uses '
                        f'{want!r}')
  if problems:
    raise tflite.ExportError(
        'the model cannot run in ESPHome micro_wake_word: ' +
        '; '.join(problems) + '. Train it with --config.frontend = '
        'micro_frontend_config(window_stride_ms=10.0) and '
        "--config.model.preprocess=micro.")


def esphome_features(features: np.ndarray, out_scale: float) -> np.ndarray:
  """Float micro-frontend features -> the int8 ESPHome feeds the model.

  ``features`` are the frontend's uint16 values times ``out_scale``
  (``MicroFrontend.out_scale``); ESPHome quantizes the uint16 ``v`` as
  ``(256 v + 333) // 666 - 128``, clamped to int8 (its
  ``generate_features_``), within one unit of ``v out_scale / FEATURE_SCALE
  - 128`` for ``out_scale`` 10/256.
  """
  raw = np.rint(np.asarray(features, np.float64) / out_scale).astype(np.int64)
  return np.clip((raw * 256 + 333) // 666 - 128, -128, 127).astype(np.int8)


# -- The model ----------------------------------------------------------------


def keyword_probability(logits: jax.Array, keyword: int) -> jax.Array:
  """``logits [1, labels]`` -> ``[1, 1]``: ``sigmoid(l_k - max_{j!=k} l_j)``.

  Written with the ops ESPHome registers: one matmul for the differences
  ``l_j - l_k``, a max pool over them, a multiplication by -1, LOGISTIC.
  """
  labels = logits.shape[-1]
  others = [j for j in range(labels) if j != keyword]
  differences = np.zeros((labels, len(others)), np.float32)
  for column, j in enumerate(others):
    differences[j, column] = 1.0
  differences[keyword, :] = -1.0
  gaps = logits @ differences  # [1, labels - 1]: l_j - l_k
  worst = lax.reduce_window(gaps.reshape(1, 1, len(others), 1), -jnp.inf,
                            lax.max, (1, 1, len(others), 1), (1, 1, 1, 1),
                            'VALID').reshape(1, 1)
  return jax.nn.sigmoid(worst * -1.0)


def probability_fn(model: Model, params: Any, keyword: int
                   ) -> Callable[..., tuple]:
  """``(block [1, stride, 40], *states) -> (probability [1, 1], *states)``."""
  step = forms.streaming_fn(model, params)

  def probability_step(block, *states):
    logits, *new_states = step(block, *states)
    return (keyword_probability(logits, keyword), *new_states)

  return probability_step


def _probability_module(model: Model, params: Any, keyword: int):
  """A ``tf.Module``: ``serving(features) -> {'probability'}``, the states in
  variables."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  from kws_jax.export import savedmodel  # pylint: disable=g-import-not-at-top

  class ProbabilityModule(tf.Module):
    """The streaming probability step with its states in variables."""

    def __init__(self):
      super().__init__(name='esphome')
      specs = forms.state_specs(model)
      self.states = [tf.Variable(tf.zeros(s.shape, s.dtype), trainable=False,
                                 name=savedmodel.state_key(s)) for s in specs]
      step = jax2tf.convert(probability_fn(model, params, keyword),
                            with_gradient=False)

      def serving(features):
        probability, *new = step(features,
                                 *[v.read_value() for v in self.states])
        for variable, value in zip(self.states, new):
          variable.assign(value)
        return {'probability': probability}

      self.serving = tf.function(
          serving, autograph=False, input_signature=[tf.TensorSpec(
              (1, model.block_size, FEATURES), tf.float32, name='features')])

  return ProbabilityModule()


def _representative(model: Model, clips: np.ndarray
                    ) -> Callable[[], Iterable[dict[str, np.ndarray]]]:
  """Feature blocks of ``clips [n, frames, 40]`` in streaming order, clipped
  to what int8 holds; the first block also holds 0 and ``FEATURE_MAX`` so
  the input's calibrated range is exactly ESPHome's."""
  block = model.block_size
  samples = []
  for clip in np.clip(clips, 0.0, FEATURE_MAX).astype(np.float32):
    for start in range(0, clip.shape[0] - block + 1, block):
      samples.append(clip[None, start:start + block])
  samples[0] = samples[0].copy()
  samples[0].reshape(-1)[:2] = (0.0, FEATURE_MAX)
  return lambda: ({'features': sample} for sample in samples)


def convert(model: Model, params: Any, keyword: int, calibration: np.ndarray
            ) -> bytes:
  """The ESPHome flatbuffer of ``model`` (on features, BatchNorm folded).

  ``calibration``: feature clips ``[n, frames, 40]`` streamed in order to
  calibrate the activations and states.

  Raises:
    ExportError: the converter fails, or the result is not what ESPHome
      runs (``check_flatbuffer``).
  """
  flatbuffer = slices_as_strided_slices(
      converter_output(model, params, keyword, calibration))
  check_flatbuffer(flatbuffer)
  return flatbuffer


def converter_output(model: Model, params: Any, keyword: int,
                     calibration: np.ndarray) -> bytes:
  """What TFLite's converter makes of the probability step: full int8, the
  states int8 resource variables, uint8 out (SLICE ops not yet rewritten)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  module = _probability_module(model, params, keyword)
  with tempfile.TemporaryDirectory() as scratch:
    tf.saved_model.save(module, scratch, signatures={
        'serving_default': module.serving.get_concrete_function()})
    converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(model, calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.uint8
    converter.experimental_enable_resource_variables = True
    # int8 variables, as the states of the external-state model.
    converter._experimental_variable_quantization = True  # pylint: disable=protected-access
    try:
      return converter.convert()
    except Exception as error:  # pylint: disable=broad-exception-caught
      raise tflite.ExportError(f'ESPHome conversion failed: '
                               f'{str(error)[-600:]}') from None


def slices_as_strided_slices(flatbuffer: bytes) -> bytes:
  """Every SLICE op rewritten as the STRIDED_SLICE that copies the same
  elements (strides 1): ESPHome's resolver has STRIDED_SLICE only.

  The converter lowers a unit-stride slice to SLICE; its ``begin`` and
  ``size`` are constants here (a streaming buffer's shift), so the rewrite
  adds constant ``end`` and ``strides`` tensors.
  """
  import flatbuffers  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
  codes = [max(c.builtinCode, c.deprecatedBuiltinCode)
           for c in model.operatorCodes]
  slice_code = schema.BuiltinOperator.SLICE
  if slice_code not in codes:
    return flatbuffer
  strided = schema.BuiltinOperator.STRIDED_SLICE
  if strided not in codes:
    code = schema.OperatorCodeT()
    code.builtinCode = strided
    code.deprecatedBuiltinCode = min(strided, 127)
    code.version = 2  # int8
    model.operatorCodes.append(code)
    codes.append(strided)
  strided_index = codes.index(strided)

  def constant(subgraph, name: str, values: np.ndarray) -> int:
    buffer = schema.BufferT()
    buffer.data = np.asarray(values, '<i4').tobytes()
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape = [len(values)]
    tensor.type = schema.TensorType.INT32
    tensor.buffer = len(model.buffers) - 1
    tensor.name = name.encode()
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1

  def values_of(subgraph, index: int) -> np.ndarray:
    data = model.buffers[subgraph.tensors[index].buffer].data
    if data is None or not len(data):
      raise tflite.ExportError('a SLICE with computed begin or size cannot '
                               'become a STRIDED_SLICE for ESPHome')
    return np.frombuffer(bytes(data), '<i4')

  for subgraph in model.subgraphs:
    for number, op in enumerate(subgraph.operators):
      if codes[op.opcodeIndex] != slice_code:
        continue
      source, begin_index, size_index = (int(i) for i in op.inputs)
      begin = values_of(subgraph, begin_index)
      size = values_of(subgraph, size_index)
      shape = np.asarray(subgraph.tensors[source].shape)
      end = np.where(size < 0, shape, begin + size)
      op.inputs = [source, begin_index,
                   constant(subgraph, f'slice{number}/end', end),
                   constant(subgraph, f'slice{number}/strides',
                            np.ones_like(end))]
      op.opcodeIndex = strided_index
      op.builtinOptionsType = schema.BuiltinOptions.StridedSliceOptions
      op.builtinOptions = schema.StridedSliceOptionsT()
  builder = flatbuffers.Builder(len(flatbuffer) + 4096)
  builder.Finish(model.Pack(builder), file_identifier=b'TFL3')
  return bytes(builder.Output())


def resource_variables(flatbuffer: bytes) -> list[str]:
  """The distinct resource variables (shared names) the model's VAR_HANDLE
  ops create, over all subgraphs."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
  return sorted({op.builtinOptions.sharedName.decode()
                 for subgraph in model.subgraphs for op in subgraph.operators
                 if op.builtinOptionsType ==
                 schema.BuiltinOptions.VarHandleOptions})


def check_flatbuffer(flatbuffer: bytes
                     ) -> tuple[TensorInfo, TensorInfo]:
  """Raises ExportError unless ESPHome can run ``flatbuffer``; returns its
  input and output."""
  inputs, outputs = micro_runtime.signature(flatbuffer)
  problems = []
  extra = sorted(set(tflite.op_names(flatbuffer)) - ESPHOME_OPS)
  if extra:
    problems.append(f'it uses {", ".join(extra)}, which ESPHome does not '
                    'register (a recurrent layer or a softmax head?)')
  floats = sorted(n for n, kind in tflite.tensor_types(flatbuffer).items()
                  if kind.startswith('FLOAT'))
  if floats:
    problems.append(f'float tensors remain: {", ".join(floats[:6])}')
  variables = len(resource_variables(flatbuffer))
  if variables > MAX_RESOURCE_VARIABLES:
    problems.append(f'it keeps {variables} state variables, ESPHome holds at '
                    f'most {MAX_RESOURCE_VARIABLES}')
  if list(inputs) != ['features'] or list(outputs) != ['probability']:
    problems.append(f'inputs {list(inputs)} and outputs {list(outputs)}, '
                    "expected ['features'] and ['probability']")
  else:
    feature, probability = inputs['features'], outputs['probability']
    if (feature.dtype != np.int8 or len(feature.shape) != 3
        or feature.shape[0] != 1 or feature.shape[2] != FEATURES):
      problems.append(f'input {feature.dtype} {feature.shape}, expected int8 '
                      f'[1, stride, {FEATURES}]')
    if (feature.scale, feature.zero_point) != (FEATURE_SCALE,
                                               FEATURE_ZERO_POINT):
      problems.append(
          f'input quantized with scale {feature.scale:.8g} and zero point '
          f'{feature.zero_point}, ESPHome feeds scale {FEATURE_SCALE} and '
          f'zero point {FEATURE_ZERO_POINT}')
    if (probability.dtype != np.uint8 or probability.shape != (1, 1) or
        (probability.scale, probability.zero_point) != (PROBABILITY_SCALE, 0)):
      problems.append(
          f'output {probability.dtype} {probability.shape} with scale '
          f'{probability.scale:.6g}, zero point {probability.zero_point}; '
          f'expected uint8 (1, 1), scale 1/256, zero point 0')
  if problems:
    raise tflite.ExportError('the ESPHome model is not what micro_wake_word '
                             'runs: ' + '; '.join(problems))
  return inputs['features'], outputs['probability']


# -- Running it -----------------------------------------------------------------


class ProbabilityStream:
  """The ESPHome model under TFLM (what the device runs) or LiteRT.

  ``stream(block)``: int8 ``[1, stride, 40]`` -> the uint8 probability;
  ``reset()``: a fresh interpreter, the states at their initial values.
  """

  def __init__(self, flatbuffer: bytes, runtime: str = 'tflm',
               arena_size: int | None = None):
    if runtime not in ('tflm', 'litert'):
      raise ValueError(f"runtime {runtime!r}, expected 'tflm' or 'litert'")
    self.flatbuffer, self.runtime = flatbuffer, runtime
    self.arena_size = arena_size or 10 * len(flatbuffer) + (1 << 20)
    self.input, self.output = check_flatbuffer(flatbuffer)
    self.reset()

  def reset(self) -> None:
    if self.runtime == 'tflm':
      with micro_runtime._quiet_stderr():  # pylint: disable=protected-access
        interpreter = micro_runtime._tflm_interpreter(  # pylint: disable=protected-access
            self.flatbuffer, self.arena_size)

      def invoke(block):
        interpreter.set_input(block, 0)
        interpreter.invoke()
        return interpreter.get_output(0)
    else:
      from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=g-import-not-at-top
      interpreter = Interpreter(
          model_content=self.flatbuffer, num_threads=1,
          experimental_op_resolver_type=(
              OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
      runner = interpreter.get_signature_runner('serving_default')

      def invoke(block):
        return runner(features=block)['probability']
    self._invoke = invoke

  def __call__(self, block: np.ndarray) -> int:
    if block.shape != self.input.shape or block.dtype != np.int8:
      raise ValueError(f'features block {block.dtype} {block.shape}, '
                       f'expected int8 {self.input.shape}')
    return int(np.asarray(self._invoke(block)).reshape(()))

  def probabilities(self, features: np.ndarray) -> np.ndarray:
    """uint8 ``[steps]`` over int8 ``features [frames, 40]``, one per block,
    from the current state."""
    stride = self.input.shape[1]
    steps = features.shape[0] // stride
    return np.array([self(features[None, i * stride:(i + 1) * stride])
                     for i in range(steps)], np.uint8)


def window_sums(probabilities: np.ndarray, window: int) -> np.ndarray:
  """Sum of the last ``window`` uint8 probabilities at every step, the
  window zero-filled at the start (ESPHome's ring of recent
  probabilities)."""
  total = np.cumsum(np.asarray(probabilities, np.int64))
  shifted = np.concatenate([np.zeros(window, np.int64), total])[:len(total)]
  return total - shifted


def fires(sums: np.ndarray, cutoff: int, window: int) -> np.ndarray:
  """Where ESPHome's rule holds: mean over ``window`` > uint8 ``cutoff``."""
  return sums > cutoff * window


def cutoff_value(cutoff: int) -> float:
  """The manifest's ``probability_cutoff`` that ESPHome truncates
  (``int(c * 255)``) back to uint8 ``cutoff``."""
  value = round((cutoff + 0.5) / 255, 4)
  assert int(value * 255) == cutoff, (value, cutoff)
  return value


@dataclasses.dataclass(frozen=True)
class Detection:
  """ESPHome's detector settings and where they come from."""

  cutoff: int  # uint8, 0..255
  sliding_window_size: int
  source: str

  def __post_init__(self):
    if not 0 <= self.cutoff <= 254:
      raise ValueError(f'cutoff {self.cutoff}, expected a uint8 in 0..254')
    if self.sliding_window_size < 1:
      raise ValueError(f'sliding_window_size {self.sliding_window_size}, '
                       'expected >= 1')


def detection_from_operating_point(point: dict[str, Any] | None,
                                   block_ms: float) -> Detection:
  """The run's float operating point (threshold, smoothing) as ESPHome
  settings, or the detector's defaults."""
  from kws_jax.detect import detector  # pylint: disable=g-import-not-at-top
  if point is None or point.get('threshold') is None:
    threshold, smoothing = (detector.DEFAULT_THRESHOLD,
                            detector.DEFAULT_SMOOTHING_MS)
    source = ("the detector's default threshold and smoothing (the run has "
              'no operating point); not chosen for this model')
  else:
    threshold, smoothing = point['threshold'], point['smoothing_ms']
    source = ("the float model's operating point (threshold "
              f'{threshold:g}, smoothing {smoothing:g} ms); not swept on this '
              'model')
  return Detection(min(254, max(0, int(threshold * 255))),
                   max(1, round(smoothing / block_ms)), source)


def clip_detection(stream: ProbabilityStream, clips: np.ndarray,
                   labels: np.ndarray, keyword: int, detection: Detection
                   ) -> dict[str, Any]:
  """Each test clip from a fresh state: does ESPHome's rule fire anywhere
  in it? Recall on the keyword's clips, false fires on the others."""
  fired = []
  for clip in clips:
    stream.reset()
    sums = window_sums(stream.probabilities(clip),
                       detection.sliding_window_size)
    fired.append(bool(fires(sums, detection.cutoff,
                            detection.sliding_window_size).any()))
  fired = np.asarray(fired)
  positive = np.asarray(labels) == keyword
  return {
      'keyword_clips': int(positive.sum()),
      'other_clips': int((~positive).sum()),
      'recall': float(fired[positive].mean()) if positive.any() else None,
      'false_fire_rate': (float(fired[~positive].mean()) if (~positive).any()
                          else None),
  }


def manifest(wake_word: str, model_file: str, detection: Detection,
             arena_bytes: int, *, languages: Sequence[str] = ('en',),
             author: str = 'kws_jax', website: str | None = None
             ) -> dict[str, Any]:
  """The microWakeWord v2 manifest ESPHome reads."""
  entry = {
      'type': 'micro',
      'wake_word': wake_word,
      'author': author,
      'model': model_file,
      'trained_languages': list(languages),
      'version': MANIFEST_VERSION,
      'micro': {
          'probability_cutoff': cutoff_value(detection.cutoff),
          'feature_step_size': FEATURE_STEP_MS,
          'sliding_window_size': detection.sliding_window_size,
          'tensor_arena_size': arena_bytes,
          'minimum_esphome_version': MINIMUM_ESPHOME_VERSION,
      },
  }
  if website:
    entry['website'] = website
  return entry


def file_stem(wake_word: str) -> str:
  """``'hey jax'`` -> ``'hey_jax'``."""
  return re.sub(r'[^a-z0-9]+', '_', wake_word.lower()).strip('_') or 'wake_word'


def export_esphome(out_dir: str, model: Model, params: Any,
                   labels: Sequence[str], calibration: np.ndarray,
                   test_inputs: np.ndarray, test_labels: np.ndarray,
                   detection: Detection | Callable[[bytes], Detection],
                   budget: micro.Budget = micro.Budget(),
                   **manifest_fields) -> dict[str, Any]:
  """Writes ``out_dir/esphome/`` (see the module doc); returns the export
  manifest's ``esphome`` entry.

  Args:
    out_dir: the export directory.
    model, params: the trained model (BatchNorm folded, no fake quant).
    labels: its label names; one must be a keyword.
    calibration, test_inputs: frontend feature clips ``[n, frames, 40]``.
    test_labels: label indices of ``test_inputs``.
    detection: the cutoff and window to write, or a function of the
      flatbuffer that chooses them (e.g. by a sweep on streams).
    budget: the device's limits.
    **manifest_fields: ``languages``, ``author``, ``website``.
  """
  check_model(model)
  keyword = keyword_index(labels)
  model = micro.features_model(model)
  flatbuffer = convert(model, params, keyword, calibration)
  arena = micro_runtime.smallest_arena(flatbuffer)
  budget.check(arena, len(flatbuffer))
  if callable(detection):
    detection = detection(flatbuffer)
  stem = file_stem(labels[keyword])
  folder = os.path.join(out_dir, ESPHOME_FOLDER)
  model_file = f'{stem}.tflite'
  with atomic_write(os.path.join(folder, model_file)) as file:
    file.write(flatbuffer)
  out_scale = model.frontend.out_scale
  test_features = esphome_features(test_inputs, out_scale)
  measured = clip_detection(ProbabilityStream(flatbuffer, 'tflm', arena),
                            test_features, test_labels, keyword, detection)
  entry = manifest(labels[keyword].replace('_', ' '), model_file, detection,
                   arena, **manifest_fields)
  write_json(os.path.join(folder, f'{stem}.json'), entry)
  return {
      'file': f'{ESPHOME_FOLDER}/{model_file}',
      'manifest': f'{ESPHOME_FOLDER}/{stem}.json',
      'flash_bytes': len(flatbuffer),
      'arena_bytes': arena,
      'stride': model.block_size,
      'resource_variables': resource_variables(flatbuffer),
      'ops': tflite.op_names(flatbuffer),
      'probability_cutoff_uint8': detection.cutoff,
      'sliding_window_size': detection.sliding_window_size,
      'cutoff_source': detection.source,
      'test_split_tflm': measured,
  }
