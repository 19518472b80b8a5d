"""``export_run(workdir)``: every inference form of a trained model, measured.

Writes under the output directory (the workdir by default), with
kws_streaming's names:

    non_stream/  stream_state_internal/  stream_state_external/   SavedModels
    tflite_non_stream/non_stream.tflite
    tflite_stream_state_internal/stream_state_internal.tflite  (variables)
    tflite_stream_state_external/stream_state_external.tflite
    quantize_opt_for_size_tflite_non_stream/non_stream.tflite   (int8 weights)
    quantize_opt_for_size_tflite_stream_state_external/stream_state_external.tflite
    quantize_int8_tflite_non_stream/non_stream.tflite           (int8 weights
    quantize_int8_tflite_stream_state_external/stream_state_external.tflite
                                                      and activations)
    jax/                                 the JAX forms' accuracies
    manifest.json                        tensors, states, labels, files, ...

and in every TFLite folder ``model_summary.txt`` plus its accuracy files
(``tflite_non_stream_model_accuracy.txt`` or
``tflite_stream_state_*_model_accuracy_reset0.txt`` / ``_reset1.txt``).
Accuracies are percentages on the test split, as kws_streaming writes them.

Exported graphs use ``lax.conv`` convolutions (TFLite ``CONV_2D``), with
every BatchNorm folded into the convolution or dense layer before it
(``fold_model``; the streaming parity is measured against the unfolded JAX
model). A quantization-aware model (``quantization.aware``) is exported as
its float network with int8 kernels: its fake quantization is stripped
(``without_fake_quant``), and the JAX accuracies are that network's. The
quantized models keep the frontend in float: its constant matrices are split
into blocks TFLite's weight quantizer leaves alone, and full-int8 conversion
keeps the frontend and the first layer float (see ``float_scopes`` and
``tflite.convert_int8``).
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import hashlib
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Collection
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from kws_jax import atomic
from kws_jax import config as kws_config
from kws_jax import data, evaluate
from kws_jax.atomic import atomic_write
from kws_jax.export import accuracy, forms, savedmodel, tflite
from kws_jax.export import esphome as esphome_export
from kws_jax.export import micro as micro_export
from kws_jax.frontend import MfccFrontend
from kws_jax.layers import count_params
from kws_jax.layers.folding import fold_batch_norms
from kws_jax.layers.quantize import is_fake_quantized, strip_fake_quant
from kws_jax.models import Model, build_model
from kws_jax.train import load_run
from kws_jax.train.loop import load_dataset
from kws_jax.train import workdir as run_files
from kws_jax.train.workdir import OPERATING_POINT_FILE

MANIFEST_FORMAT = 1
# TFLite folder -> (file, form, quantization).
TFLITE_MODELS = {
    'tflite_non_stream': ('non_stream.tflite', 'non_stream', 'float'),
    'tflite_stream_state_external': ('stream_state_external.tflite',
                                     'stream_state_external', 'float'),
    'tflite_stream_state_internal': ('stream_state_internal.tflite',
                                     'stream_state_internal', 'float'),
    'quantize_opt_for_size_tflite_non_stream': ('non_stream.tflite',
                                                'non_stream', 'dynamic'),
    'quantize_opt_for_size_tflite_stream_state_external': (
        'stream_state_external.tflite', 'stream_state_external', 'dynamic'),
    'quantize_int8_tflite_non_stream': ('non_stream.tflite', 'non_stream',
                                        'int8'),
    'quantize_int8_tflite_stream_state_external': (
        'stream_state_external.tflite', 'stream_state_external', 'int8'),
}
# Test splits smaller than this are measured in the exporting process.
IN_PROCESS_SPLIT_CLIPS = 200
CALIBRATION_CLIPS = {'non_stream': 400, 'stream_state_external': 100}


def export_models(config) -> tuple[Model, Model]:
  """The model for float graphs and the one for quantized graphs."""
  float_config = copy.deepcopy(config)
  float_config.model.conv_implementation = 'xla'
  quant_config = copy.deepcopy(float_config)
  if quant_config.frontend.get('name', 'mfcc') == 'mfcc':
    quant_config.frontend.max_weight_block = 1023
  return build_model(float_config), build_model(quant_config)


def without_fake_quant(models: tuple[Model, ...], params: Any
                       ) -> tuple[tuple[Model, ...], Any]:
  """Quantization-aware ``models`` (one network built alike) as the float
  models the export converts, and their params with int8 kernels
  (``layers.quantize.strip_fake_quant``)."""
  stripped = []
  for model in models:
    net, stripped_params = strip_fake_quant(model.net, params)
    stripped.append(dataclasses.replace(model, net=net))
  return tuple(stripped), stripped_params


# Folding BatchNorm only reorders float32 arithmetic.
FOLDING_TOLERANCE = 1e-4


def fold_model(model: Model, params: Any, check_inputs: np.ndarray
               ) -> tuple[Model, Any]:
  """``model`` with its BatchNorms folded (``layers.fold_batch_norms``).

  Checks the folded model's logits on ``check_inputs`` (a few clips) against
  the original's, so a fold that changed the function never reaches a file.

  Raises:
    ValueError: the logits differ by more than ``FOLDING_TOLERANCE``.
  """
  net, folded_params = fold_batch_norms(model.net, params)
  if net is model.net:
    return model, params
  folded = dataclasses.replace(model, net=net)
  inputs = jax.numpy.asarray(check_inputs)
  diff = float(np.max(np.abs(np.asarray(folded.logits(folded_params, inputs)) -
                             np.asarray(model.logits(params, inputs)))))
  if not diff <= FOLDING_TOLERANCE:
    raise ValueError(f'{model.name}: folding BatchNorm changed the logits by '
                     f'{diff:.2e} (more than {FOLDING_TOLERANCE:g}); export '
                     'refused.')
  return folded, folded_params


def _write(path: str, text: str) -> None:
  with atomic_write(path, 'w') as file:
    file.write(text)


# The first weighted layer of an MFCC model stays float in int8 exports if it
# holds at most this share of the parameters.
FLOAT_FIRST_LAYER_SHARE = 0.05


def float_scopes(model: Model) -> tuple[str, ...]:
  """Scopes kept float in int8 models (every op up to the last of them).

  MFCC models: the frontend and the first weighted layer, if it is small
  (``FLOAT_FIRST_LAYER_SHARE``). MFCC coefficients
  span very different ranges (c0 about 10x the others), so one int8 scale
  for the first layer's input loses the small ones; keeping that layer (1
  input channel, a tiny share of the compute) in float costs nothing and
  keeps int8 accuracy within a point of float (RESULTS.md).

  Speech embedding models: the embedding (see
  ``SpeechEmbedding.float_scopes``); the head is int8.
  """
  frontend = model.frontend
  if not isinstance(frontend, MfccFrontend):
    return frontend.float_scopes if model.preprocess == 'raw' else ()
  weighted = jax.eval_shape(lambda: model.init(jax.random.key(0)))
  first = next(layer.name for layer in model.body.layers
               if layer.name in weighted)
  scopes = (frontend.name,) if model.preprocess == 'raw' else ()
  # Only a small first layer stays float: a GRU that holds most of the
  # weights would leave the int8 model as large as the float one.
  if (count_params(weighted[first]) <=
      FLOAT_FIRST_LAYER_SHARE * count_params(weighted)):
    scopes += (first,)
  return scopes


def representative_dataset(form: str, model: Model, params: Any,
                           clips: np.ndarray):
  """A generator factory of ``{signature input: array}`` calibration samples."""
  name = forms.input_name(model)
  if form == 'non_stream':
    samples = [{name: clip[None]} for clip in clips]
  else:
    specs = forms.state_specs(model)
    stream = forms.JaxStream(model, params)
    samples = []
    for clip in clips:
      states, _ = stream.run(clip[None])
      block = model.block_size
      for i, state in enumerate(states):
        samples.append({name: clip[None, i * block:(i + 1) * block],
                        **{savedmodel.state_key(s): v
                           for s, v in zip(specs, state)}})
  return lambda: iter(samples)


def convert_form(form: str, quantization: str, source: str, model: Model,
                 quant_model: Model, params: Any,
                 calibration: np.ndarray | None = None) -> bytes:
  """The TFLite flatbuffer of one exported form and quantization.

  Args:
    form: 'non_stream', 'stream_state_external' or 'stream_state_internal'.
    quantization: 'float', 'dynamic' or 'int8'.
    source: the form's SavedModel, saved from ``model`` for 'float' and
      from ``quant_model`` otherwise (see ``export_models``).
    model, quant_model: the pair of ``export_models``.
    params: the weights.
    calibration: clips ``[n, clip, ...]`` that calibrate 'int8'.
  """
  if quantization != 'int8':
    return tflite.convert(source, quantization,
                          resource_variables=form == 'stream_state_internal')
  if calibration is None:
    raise ValueError('int8 quantization needs calibration clips.')
  return tflite.convert_int8(
      source, representative_dataset(form, quant_model, params, calibration),
      float_scopes(model))


def export_run(workdir: str, out_dir: str | None = None, *,
               int8: bool = True, progress: bool = True,
               workers: int | None = None,
               folders: Collection[str] | None = None,
               micro: bool = False,
               budget: micro_export.Budget = micro_export.Budget(),
               esphome: bool = False,
               esphome_detection: Callable[[bytes], esphome_export.Detection]
               | None = None,
               esphome_manifest: dict[str, Any] | None = None
               ) -> dict[str, Any]:
  """Exports the best checkpoint of ``workdir`` in every form; see module doc.

  ``workers``: processes that measure the TFLite models' accuracy while the
  next one converts (default: one per core, or 0 for a test split under
  ``IN_PROCESS_SPLIT_CLIPS`` clips; 0 measures each model in this process
  right after it converts, which saves starting processes that would take
  longer to import TensorFlow than to measure). ``folders``: the
  ``TFLITE_MODELS`` to write (default: all; ``int8=False`` drops the int8
  ones). ``micro``: also the full-integer streaming model for TensorFlow
  Lite Micro and its C files (``kws_jax.export.micro``), first, so a model
  over ``budget`` fails before the other conversions. ``esphome``: also the
  single-keyword model and manifest for ESPHome's micro_wake_word
  (``kws_jax.export.esphome``), its detector from ``esphome_detection(
  flatbuffer)`` (default: the run's operating point) and
  ``esphome_manifest`` (``languages``, ``author``, ``website``).

  Returns the manifest (also written to ``out_dir/manifest.json``).

  Raises:
    FileNotFoundError: ``workdir`` has no trained checkpoint.
    tflite.ExportError: a form cannot be converted with TFLite builtin ops.
  """
  started = time.time()
  unknown = sorted(set(folders or ()) - set(TFLITE_MODELS))
  if unknown:
    raise ValueError(f'folders: {", ".join(unknown)} are not TFLite forms; '
                     f'expected some of {", ".join(TFLITE_MODELS)}.')
  out_dir = atomic.check_writable_directory(out_dir or workdir, '--out')
  for directory in [out_dir] + [entry.path for entry in os.scandir(out_dir)
                                if entry.is_dir()]:
    atomic.remove_leftovers(directory)  # of an export that was killed
  config, trained, params = load_run(workdir)
  label_names = read_label_names(workdir)
  if not os.path.isdir(config.data.data_dir):
    raise FileNotFoundError(
        f'the data of {workdir} ({config.data.data_dir!r}) is not found from '
        f'here ({os.getcwd()}) nor from where the run was trained '
        f'({run_files.trained_from(workdir) or "not recorded"}); the export '
        'measures accuracy on its test split and calibrates int8 on its '
        'training clips.')
  model, quant_model = export_models(config)
  quantization_aware = is_fake_quantized(model.net)
  if quantization_aware:
    (model, quant_model, trained), params = without_fake_quant(
        (model, quant_model, trained), params)
  dataset = load_dataset(config)
  layout = kws_config.clip_layout(config)
  inputs, labels = accuracy.load_split(model, dataset, 'testing',
                                       config.train.batch_size, layout)
  train_inputs, _ = accuracy.load_split(model, dataset, 'training',
                                        config.train.batch_size, layout)
  with open(os.path.join(workdir, 'model_summary.txt'), encoding='utf-8') as f:
    summary = f.read()
  say = (lambda message: tqdm.write(message)) if progress else (lambda m: None)

  # The graphs compute BatchNorm inside the layer before it; the parity
  # check below compares them with the unfolded JAX model.
  unfolded_model, unfolded_params = model, params
  model, params = fold_model(unfolded_model, unfolded_params, inputs[:4])
  # Same layers but for the frontend's weight blocks: folded alike, the
  # float model's check covers it.
  quant_model = dataclasses.replace(
      quant_model, net=fold_batch_norms(quant_model.net, unfolded_params)[0])
  # A model that cannot stream (supports_step False) gets its
  # non-streaming forms only.
  exported_forms = [form for form in savedmodel.FORMS
                    if model.supports_step or form == 'non_stream']
  if not model.supports_step:
    say(f'{model.name} cannot stream: exporting its non-streaming forms only')
  micro_entry = None
  if micro:
    micro_entry = _export_micro(out_dir, model, params, train_inputs, inputs,
                                labels, budget)
    say(f'{micro_entry["file"]}: {micro_entry["flash_bytes"]:,} bytes, '
        f'arena {micro_entry["arena_bytes"]:,} bytes, int8 stream accuracy '
        f'{micro_entry["accuracy_test_split"]["tflm_reset1"]:.2f}% (TFLM)')
  esphome_entry = None
  if esphome:
    esphome_entry = _export_esphome(
        out_dir, model, params, label_names, train_inputs, inputs, labels,
        budget, esphome_detection or (
            lambda _: esphome_export.detection_from_operating_point(
                _operating_point(workdir), features_step_ms(model))),
        esphome_manifest or {})
    tested = esphome_entry['test_split_tflm']
    say(f'{esphome_entry["file"]}: {esphome_entry["flash_bytes"]:,} bytes, '
        f'arena {esphome_entry["arena_bytes"]:,} bytes; test clips under '
        f'TFLM: recall {tested["recall"]:.1%}, false fires '
        f'{tested["false_fire_rate"]:.1%}')
  for form in exported_forms:
    savedmodel.save(form, model, params, os.path.join(out_dir, form))
    say(f'SavedModel {form}/')

  results: dict[str, dict[str, Any]] = {}
  with tempfile.TemporaryDirectory() as quant_dir, _AccuracyPool(
      inputs, labels, model.block_size, quant_dir, workers) as pool:
    for form in ('non_stream', 'stream_state_external'):
      if form in exported_forms:
        savedmodel.save(form, quant_model, params,
                        os.path.join(quant_dir, form))
    for folder, (filename, form, quantization) in TFLITE_MODELS.items():
      if ((quantization == 'int8' and not int8) or form not in exported_forms
          or (folders is not None and folder not in folders)):
        continue
      source = os.path.join(out_dir if quantization == 'float' else quant_dir,
                            form)
      calibration = None
      if quantization == 'int8':
        picked = np.random.default_rng(0).choice(
            len(train_inputs), min(CALIBRATION_CLIPS[form], len(train_inputs)),
            replace=False)
        calibration = train_inputs[picked]
      flatbuffer = convert_form(form, quantization, source, model,
                                quant_model, params, calibration)
      path = os.path.join(out_dir, folder, filename)
      with atomic_write(path) as file:
        file.write(flatbuffer)
      say(f'{folder}/{filename}: {len(flatbuffer):,} bytes')
      pool.submit(folder, form, path)
      results[folder] = _describe(folder, form, path, flatbuffer, summary)
    for folder, measured in pool.results(progress).items():
      results[folder]['accuracy'] = measured
      _write_accuracies(os.path.join(out_dir, folder), results[folder]['form'],
                        measured)
      say(f'{folder}: accuracy ' + ', '.join(
          f'{k} {v:.2f}%' for k, v in measured.items()))

  jax_accuracy = _jax_accuracies(trained, unfolded_params, dataset,
                                 config.train.batch_size, out_dir, layout)
  parity = None
  if model.supports_step and 'tflite_stream_state_external' in results:
    parity = _streaming_parity(unfolded_model, unfolded_params, inputs[:8],
                               os.path.join(out_dir, 'tflite_stream_state_'
                                            'external',
                                            'stream_state_external.tflite'))
  manifest = _manifest(config, model, label_names, results, jax_accuracy,
                       parity, len(labels), _operating_point(workdir))
  manifest['quantization_aware'] = quantization_aware
  if micro_entry is not None:
    manifest['micro'] = micro_entry
  if esphome_entry is not None:
    manifest['esphome'] = esphome_entry
  _write(os.path.join(out_dir, 'manifest.json'),
         json.dumps(manifest, indent=2) + '\n')
  say(f'exported to {out_dir} in {time.time() - started:.0f} s' + (
      '' if parity is None else
      f'; float streaming TFLite vs JAX step: max |logit diff| {parity:.1e}'))
  return manifest


def _export_micro(out_dir: str, model: Model, params: Any,
                  train_inputs: np.ndarray, test_inputs: np.ndarray,
                  test_labels: np.ndarray, budget: micro_export.Budget
                  ) -> dict[str, Any]:
  """``micro_export.export_micro`` on frontend features of the clips."""
  def features(inputs: np.ndarray) -> np.ndarray:
    if model.preprocess != 'raw':
      return inputs
    frontend = jax.jit(lambda audio: model.frontend.apply({}, audio))
    return np.concatenate([np.asarray(frontend(inputs[i:i + 100]))
                           for i in range(0, len(inputs), 100)])

  return micro_export.export_micro(
      out_dir, model, params,
      lambda m, clips: representative_dataset('stream_state_external', m,
                                              params, clips),
      features(_stream_calibration(train_inputs)), features(test_inputs),
      test_labels, budget)


def _stream_calibration(train_inputs: np.ndarray) -> np.ndarray:
  """The training clips that calibrate a full-integer stream (seeded)."""
  picked = np.random.default_rng(0).choice(
      len(train_inputs), min(CALIBRATION_CLIPS['stream_state_external'],
                             len(train_inputs)), replace=False)
  return train_inputs[picked]


def features_step_ms(model: Model) -> float:
  """Milliseconds of one streaming step of ``model`` on its features."""
  return micro_export.features_model(model).step_ms


def _export_esphome(out_dir: str, model: Model, params: Any,
                    label_names: list[str], train_inputs: np.ndarray,
                    test_inputs: np.ndarray, test_labels: np.ndarray,
                    budget: micro_export.Budget,
                    detection: Callable[[bytes], esphome_export.Detection],
                    fields: dict[str, Any]) -> dict[str, Any]:
  """``esphome_export.export_esphome`` on the run's feature clips."""
  esphome_export.check_model(model)  # before computing anything
  return esphome_export.export_esphome(
      out_dir, model, params, label_names, _stream_calibration(train_inputs),
      test_inputs, test_labels, detection, budget, **fields)


def read_label_names(workdir: str) -> list[str]:
  """``labels.txt`` of a run: one label per line ("hey jax" is one label).

  Raises:
    FileNotFoundError: the run has no ``labels.txt`` (checked before the
      minutes of converting).
  """
  path = os.path.join(workdir, 'labels.txt')
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{path} is missing; the manifest names the labels from it. Train '
        'the run again (python -m kws_jax.train) to rewrite it.')
  with open(path, encoding='utf-8') as file:
    return [line.strip() for line in file if line.strip()]


def _describe(folder: str, form: str, path: str, flatbuffer: bytes,
              summary: str) -> dict[str, Any]:
  """model_summary.txt of one TFLite model and its manifest entry."""
  directory = os.path.dirname(path)
  ops = tflite.op_names(flatbuffer)
  _write(os.path.join(directory, 'model_summary.txt'),
         f'{summary}\nTFLite {os.path.basename(path)}: {len(flatbuffer):,} '
         f'bytes, builtin ops: {", ".join(ops)}\n')
  return {'file': os.path.relpath(path, os.path.dirname(directory)),
          'bytes': len(flatbuffer),
          # Ties the file to this manifest: runners refuse a mismatch (a
          # killed or repeated export may leave one beside the other).
          'sha256': hashlib.sha256(flatbuffer).hexdigest(), 'form': form,
          'quantization': TFLITE_MODELS[folder][2], 'ops': ops}


def _write_accuracies(directory: str, form: str,
                      measured: dict[str, float]) -> None:
  for key, value in measured.items():
    name = ('tflite_non_stream_model_accuracy.txt' if key == 'non_stream' else
            f'tflite_{form}_model_accuracy_{key}.txt')
    _write(os.path.join(directory, name), f'{value}')


class _AccuracyPool:
  """Measures the TFLite models in worker processes while the next converts.

  Every model is measured on the whole test split (streaming models twice:
  reset1 and reset0) with a one-thread interpreter, so the measurements run
  side by side, one per core. The clips go to the workers once, as a
  memory-mapped .npy file. Workers are spawned (never forked: the parent
  holds TensorFlow's threads). With ``workers=0`` each model is measured
  in this process when it is submitted.
  """

  def __init__(self, inputs: np.ndarray, labels: np.ndarray, block_size: int,
               scratch_dir: str, workers: int | None):
    self.inputs_path = os.path.join(scratch_dir, 'test_inputs.npy')
    self.labels_path = os.path.join(scratch_dir, 'test_labels.npy')
    np.save(self.inputs_path, inputs)
    np.save(self.labels_path, labels)
    self.block_size = block_size
    if workers is None:  # processes pay off on a large split only
      workers = (0 if len(labels) < IN_PROCESS_SPLIT_CLIPS
                 else len(os.sched_getaffinity(0)))
    self.workers = workers
    if self.workers < 0:
      raise ValueError(f'workers={workers}, expected >= 0 (0: measure in '
                       'this process)')
    self.futures: dict[tuple[str, str], concurrent.futures.Future] = {}
    self.executor = None

  def __enter__(self) -> '_AccuracyPool':
    if self.workers:
      self.executor = concurrent.futures.ProcessPoolExecutor(
          self.workers, mp_context=multiprocessing.get_context('spawn'))
    return self

  def __exit__(self, *exc_info) -> None:
    if self.executor is not None:
      self.executor.shutdown(wait=True, cancel_futures=True)

  def _run(self, function, *args) -> concurrent.futures.Future:
    if self.executor is not None:
      return self.executor.submit(function, *args)
    future = concurrent.futures.Future()
    try:
      future.set_result(function(*args))
    except Exception as error:  # pylint: disable=broad-except
      future.set_exception(error)  # raised by results(), as from a worker
    return future

  def submit(self, folder: str, form: str, path: str) -> None:
    keys = ['non_stream'] if form == 'non_stream' else ['reset1', 'reset0']
    for key in keys:
      reset = None if key == 'non_stream' else int(key[-1])
      self.futures[folder, key] = self._run(
          accuracy.tflite_accuracy, path, form, reset, self.inputs_path,
          self.labels_path, self.block_size)

  def results(self, progress: bool) -> dict[str, dict[str, float]]:
    """folder -> {'non_stream' | 'reset1', 'reset0': percent}, in order."""
    bar = tqdm(total=len(self.futures), desc='TFLite accuracy on the test '
               'split', unit='pass', disable=not progress)
    with bar:
      for _ in concurrent.futures.as_completed(self.futures.values()):
        bar.update()
    measured: dict[str, dict[str, float]] = {}
    for (folder, key), future in self.futures.items():
      measured.setdefault(folder, {})[key] = future.result()
    return measured


def _jax_accuracies(model: Model, params: Any, dataset: data.SpeechCommands,
                    batch_size: int, out_dir: str,
                    layout: dict[str, Any]) -> dict[str, float]:
  measured = {'non_stream': evaluate.non_streaming_accuracy(
      model, params, dataset, batch_size=batch_size, layout=layout)}
  if model.supports_step:
    measured['stream_reset1'] = evaluate.streaming_accuracy(
        model, params, dataset, batch_size=batch_size, layout=layout)
    measured['stream_reset0'] = evaluate.streaming_accuracy(
        model, params, dataset, batch_size=batch_size, reset=False,
        layout=layout)
  files = {'non_stream': 'non_stream_model_accuracy.txt',
           'stream_reset1': 'stream_model_accuracy_reset1.txt',
           'stream_reset0': 'stream_model_accuracy_reset0.txt'}
  for key, result in measured.items():
    _write(os.path.join(out_dir, 'jax', files[key]), f'{result.accuracy * 100}')
  return {key: result.accuracy * 100 for key, result in measured.items()}


def _streaming_parity(model: Model, params: Any, inputs: np.ndarray,
                      path: str) -> float:
  """Max |logits| difference, TFLite float stream vs the JAX step, per frame."""
  diff = 0.0
  stream = forms.JaxStream(model, params)

  def compare(index: int, logits: np.ndarray) -> None:
    nonlocal diff
    _, reference = stream.run(inputs[index][None])
    diff = max(diff, float(np.max(np.abs(logits - reference))))

  accuracy.streaming_accuracy(path, inputs, np.zeros(len(inputs), int),
                              model.block_size, reset=True,
                              on_logits=compare)
  return diff


def _operating_point(workdir: str) -> dict[str, Any] | None:
  """``workdir/operating_point.json``: the detector settings chosen for a
  target false-accept rate on validation streams (kws_jax.wakeword), if any."""
  path = os.path.join(workdir, OPERATING_POINT_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as file:
    return json.load(file)


def _detection(point: dict[str, Any] | None) -> dict[str, Any]:
  """The manifest's detector settings: the run's operating point if it has
  one (and reached its target), else the detector's defaults."""
  from kws_jax.detect import detector  # pylint: disable=g-import-not-at-top
  rule = ('posterior = softmax(logits), averaged over smoothing_ms; a keyword '
          'fires when it rises to threshold, then that keyword does not fire '
          'again for refractory_ms (another may).')
  if point is None or point.get('threshold') is None:
    return {
        'smoothing_ms': detector.DEFAULT_SMOOTHING_MS,
        'threshold': detector.DEFAULT_THRESHOLD,
        'refractory_ms': detector.DEFAULT_REFRACTORY_MS,
        'note': rule + ' Defaults: pick the threshold from the DET curve of '
                'python -m kws_jax.detect --labels-csv.',
    }
  return {
      'smoothing_ms': point['smoothing_ms'],
      'threshold': point['threshold'],
      'refractory_ms': point['refractory_ms'],
      'target_fa_per_hour': point['target_fa_per_hour'],
      'validation': {key: point[key] for key in (
          'frr', 'fa_per_hour', 'validation_hours', 'validation_streams')},
      'note': rule + ' The threshold is the one of the lowest FRR within '
              'target_fa_per_hour on the validation streams, at the chosen '
              'checkpoint.',
  }


def _manifest(config, model: Model, labels: list[str],
              results: dict[str, Any], jax_accuracy: dict[str, float],
              parity: float | None, clips: int,
              operating_point: dict[str, Any] | None = None) -> dict[str, Any]:
  stream = None
  if model.supports_step:
    stream = {
        'signature': 'serving_default',
        'input': forms.streaming_input(model).as_dict(),
        'outputs': [{'name': 'logits', 'shape': [1, model.label_count],
                     'dtype': 'float32'}],
        'states': [dict(s.as_dict(), signature_name=savedmodel.state_key(s))
                   for s in forms.state_specs(model)],
        'state_order': 'layer order; external-state models take and '
                       'return every state under its signature_name, '
                       'internal-state models keep them in variables and '
                       "zero them with the 'reset' signature",
        'warmup_steps': model.lookback,
    }
  frontend = dataclasses.asdict(model.frontend)
  return {
      'format': MANIFEST_FORMAT,
      'model': model.name,
      'preprocess': model.preprocess,
      'frontend': frontend,
      'labels': labels,
      'sample_rate': model.frontend.sample_rate,
      **{key: value for key, value in kws_config.clip_layout(config).items()
         if key != 'sample_rate'},
      'step_ms': model.step_ms,
      'non_stream': {
          'signature': 'serving_default',
          'inputs': [forms.non_streaming_input(model).as_dict()],
          'outputs': [{'name': 'logits', 'shape': [1, model.label_count],
                       'dtype': 'float32'}]},
      'stream': stream,  # None: the model cannot stream
      'tflite': results,
      'accuracy_test_split': {'clips': clips, 'jax': jax_accuracy},
      'streaming_parity_max_abs_logit_diff': parity,
      'detection': _detection(operating_point),
  }
