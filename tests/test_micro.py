"""The full-integer streaming model for TensorFlow Lite Micro (export --micro)."""

import os
import re
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip('tflite_micro')

from kws_jax.export import ExportError, export_run  # pylint: disable=g-import-not-at-top
from kws_jax.export import micro, micro_runtime
from kws_jax.layers import scan_steps
from kws_jax.train import load_run, train_and_evaluate
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import
from zoo_testing import assert_micro_export


@pytest.fixture(scope='module')
def micro_run(tiny_data, tmp_path_factory):  # pylint: disable=redefined-outer-name
  """The device's path: a tiny CNN on TFLM's frontend features, trained
  quantization-aware, exported with --micro and the float external-state
  stream."""
  from kws_jax.micro_frontend import micro_frontend_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data)
  config.frontend = micro_frontend_config(window_stride_ms=20.0)
  config.model.preprocess = 'micro'
  config.quantization.aware = 1
  workdir = str(tmp_path_factory.mktemp('micro') / 'run')
  train_and_evaluate(config, workdir, progress=False)
  manifest = export_run(workdir, progress=False, workers=0,
                        folders=('tflite_stream_state_external',), micro=True)
  with open(os.path.join(workdir, manifest['micro']['file']), 'rb') as file:
    flatbuffer = file.read()
  return workdir, manifest, flatbuffer


def test_the_cnn_is_full_integer_and_tflm_matches_litert(micro_run):  # pylint: disable=redefined-outer-name
  workdir, manifest, _ = micro_run
  assert_micro_export(workdir, manifest)
  entry = manifest['micro']
  assert manifest['preprocess'] == 'micro'
  assert set(entry['inputs']) == {'features', 'state_conv2d_0',
                                  'state_conv2d_1', 'state_flatten'}
  assert entry['inputs']['features']['shape'] == [1, 1, 40]
  assert entry['macs_per_step'] > 0
  assert manifest['streaming_parity_max_abs_logit_diff'] <= 1e-4
  assert manifest['quantization_aware']
  # Only the float external-state stream was asked for besides.
  assert set(manifest['tflite']) == {'tflite_stream_state_external'}
  assert set(entry['accuracy_test_split']) == {'tflm_reset1', 'litert_reset1',
                                               'litert_reset0'}


def test_the_arena_is_the_smallest_that_works(micro_run):  # pylint: disable=redefined-outer-name
  _, manifest, flatbuffer = micro_run
  arena = manifest['micro']['arena_bytes']
  assert micro_runtime._runs_here(flatbuffer, arena)  # pylint: disable=protected-access
  assert not micro_runtime._runs_here(flatbuffer, arena - 1)  # pylint: disable=protected-access
  stream = micro_runtime.tflm_stream(flatbuffer, arena)
  assert stream(np.zeros((1, 1, 40), np.int8)).shape == (4,)


def test_the_int8_weights_are_the_quantization_aware_weights(micro_run):  # pylint: disable=redefined-outer-name
  """The converter's per-channel int8 kernels are exactly the kernels the
  quantization-aware model trained with."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  from kws_jax.layers.quantize import strip_fake_quant  # pylint: disable=g-import-not-at-top
  workdir, _, flatbuffer = micro_run
  _, model, params = load_run(workdir)
  _, stripped = strip_fake_quant(model.net, params)
  interpreter = Interpreter(model_content=flatbuffer)
  interpreter.allocate_tensors()
  stored = []
  for detail in interpreter.get_tensor_details():
    scales = detail['quantization_parameters']['scales']
    if detail['dtype'] == np.int8 and len(scales) > 1:  # per-channel weights
      values = interpreter.get_tensor(detail['index']).astype(np.float32)
      shape = [1] * values.ndim
      shape[detail['quantization_parameters']['quantized_dimension']] = -1
      stored.append(values * scales.reshape(shape))
  kernels = {name: np.asarray(layer['kernel']) for name, layer in
             stripped.items() if 'kernel' in layer}
  assert set(kernels) == {'conv2d_0', 'conv2d_1', 'dense_0', 'logits'}
  for name, kernel in kernels.items():
    # TFLite's layouts: conv [out, kt, kf, in], dense [out, in]; a conv of
    # one input channel runs as a depthwise one, [1, kt, kf, out].
    layouts = [np.moveaxis(kernel, -1, 0), np.moveaxis(kernel, -2, 0)]
    matches = [w for w in stored for layout in layouts
               if w.shape == layout.shape and
               np.allclose(w, layout, rtol=0, atol=1e-7)]
    assert len(matches) == 1, name


def test_dequantized_logits_follow_the_float_step(micro_run):  # pylint: disable=redefined-outer-name
  workdir, _, flatbuffer = micro_run
  _, model, params = load_run(workdir)
  features = np.random.default_rng(0).normal(
      0.5, 0.2, (1, 60, 40)).astype(np.float32)
  _, expected = scan_steps(model, params, jnp.asarray(features))
  stream = micro.FloatFacing(micro_runtime.tflm_stream(flatbuffer))
  got = np.stack([stream(features[:, i:i + 1]) for i in range(60)])
  expected = np.asarray(expected[0])
  # int8 rounding through four layers: a few units of the logits' scale.
  unit = stream.stream.outputs['logits'].scale
  error = float(np.max(np.abs(got - expected)))
  assert error < 8 * unit + 0.1 * np.ptp(expected), (error, unit)
  assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.9


def test_the_c_array_holds_the_model(micro_run):  # pylint: disable=redefined-outer-name
  workdir, manifest, flatbuffer = micro_run
  folder = os.path.join(workdir, 'micro')
  with open(os.path.join(folder, 'model_data.cc'), encoding='utf-8') as f:
    source = f.read()
  assert 'alignas(16) const unsigned char g_kws_model[]' in source
  data = bytes(int(h, 16) for h in re.findall(r'0x([0-9a-f]{2})', source))
  assert data == flatbuffer
  assert f'g_kws_model_len = {len(flatbuffer)};' in source
  with open(os.path.join(folder, 'example.cc'), encoding='utf-8') as f:
    example = f.read()
  arena = manifest['micro']['arena_bytes']
  assert f'constexpr int kTensorArenaSize = {arena};' in example
  registered = re.findall(r'resolver\.(Add\w+)\(\);', example)
  assert registered == [micro.resolver_method(op)
                        for op in manifest['micro']['ops']]
  assert f'MicroMutableOpResolver<{len(registered)}>' in example


@pytest.mark.skipif(shutil.which('g++') is None, reason='no C++ compiler')
def test_the_c_source_compiles_to_the_same_bytes(micro_run, tmp_path):  # pylint: disable=redefined-outer-name
  workdir, _, flatbuffer = micro_run
  folder = os.path.join(workdir, 'micro')
  main = tmp_path / 'dump.cc'
  main.write_text(
      '#include <cstdio>\n#include <cstdint>\n#include "model_data.h"\n'
      'int main() {\n'
      '  if (reinterpret_cast<std::uintptr_t>(g_kws_model) % 16) return 2;\n'
      '  fwrite(g_kws_model, 1, g_kws_model_len, stdout);\n  return 0;\n}\n')
  binary = tmp_path / 'dump'
  subprocess.run(['g++', '-std=c++17', '-I', folder, str(main),
                  os.path.join(folder, 'model_data.cc'), '-o', str(binary)],
                 check=True, capture_output=True)
  result = subprocess.run([str(binary)], capture_output=True, check=True)
  assert result.stdout == flatbuffer


@pytest.mark.parametrize('budget, message', [
    (micro.Budget(max_arena_bytes=1000),
     r'needs a 1,001-byte tensor arena \(limit --max-arena-bytes 1,000\);'),
    (micro.Budget(max_flash_bytes=2000),
     r'needs 2,001 bytes of flash \(limit --max-flash-bytes 2,000\);'),
    (micro.Budget(1000, 2000), r'arena .* and 2,001 bytes of flash'),
])
def test_the_budget_names_every_figure_over_its_limit(budget, message):
  with pytest.raises(ExportError, match=message):
    budget.check(1001, 2001)
  budget.check(1000, 2000)  # at the limits: fits


def test_a_model_over_the_budget_is_refused_before_anything_is_written(
    micro_run, tmp_path):  # pylint: disable=redefined-outer-name
  workdir, manifest, _ = micro_run
  arena = manifest['micro']['arena_bytes']
  out = tmp_path / 'out'
  with pytest.raises(ExportError, match=f'needs a {arena:,}-byte tensor arena'):
    export_run(workdir, str(out), progress=False, workers=0, folders=(),
               micro=True, budget=micro.Budget(max_arena_bytes=arena - 1))
  assert not (out / 'micro').exists() and not (out / 'manifest.json').exists()


def test_budget_flags_need_micro(micro_run):  # pylint: disable=redefined-outer-name
  result = subprocess.run(
      [sys.executable, '-m', 'kws_jax.export', '--workdir', micro_run[0],
       '--max-arena-bytes', '1000'], capture_output=True, text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 2
  assert '--max-arena-bytes and --max-flash-bytes need --micro' in result.stderr


@pytest.mark.parametrize('op, method', [
    ('CONV_2D', 'AddConv2D'), ('DEPTHWISE_CONV_2D', 'AddDepthwiseConv2D'),
    ('FULLY_CONNECTED', 'AddFullyConnected'), ('LOGISTIC', 'AddLogistic'),
    ('AVERAGE_POOL_2D', 'AddAveragePool2D'), ('BATCH_MATMUL', 'AddBatchMatMul'),
    ('STRIDED_SLICE', 'AddStridedSlice')])
def test_resolver_methods(op, method):
  assert micro.resolver_method(op) == method


def test_a_block_of_the_wrong_type_is_refused(micro_run):  # pylint: disable=redefined-outer-name
  stream = micro_runtime.litert_stream(micro_run[2])
  with pytest.raises(ValueError, match=r"input 'features' is float32 \(1, 1, "
                     r'40\), expected int8 \(1, 1, 40\) \(quantize'):
    stream(np.zeros((1, 1, 40), np.float32))



def test_the_runner_rebuilds_the_micro_frontend(micro_run):  # pylint: disable=redefined-outer-name
  from kws_jax.detect.runners import TfliteRunner  # pylint: disable=g-import-not-at-top
  runner = TfliteRunner(os.path.join(
      micro_run[0], 'tflite_stream_state_external',
      'stream_state_external.tflite'))
  assert runner.block_samples == 320
  assert runner(np.zeros(320, np.float32)).shape == (4,)


def test_a_computed_state_gets_one_quantization_on_both_sides(tmp_path):
  """An LSTM's cell state is computed anew each step: calibration ranges
  its input and output apart, and the export gives both the wider
  quantization so the device can copy it back."""
  import jax  # pylint: disable=g-import-not-at-top
  from kws_jax import config as kws_config  # pylint: disable=g-import-not-at-top
  from kws_jax.export import pipeline, savedmodel, tflite  # pylint: disable=g-import-not-at-top
  from kws_jax.models import build_model, lstm  # pylint: disable=g-import-not-at-top
  config = kws_config.default_config()
  config.model = lstm.default_config()
  config.model.update(preprocess='mfcc', lstm_units='8', num_proj='4')
  config.data.wanted_words = 'yes,no'
  model = build_model(config)
  params = model.init(jax.random.key(0))
  clips = np.random.default_rng(0).normal(
      0, 1, (4, model.clip_length, *model.input_shape)).astype(np.float32)
  savedmodel.save('stream_state_external', model, params, str(tmp_path))
  converted = tflite.convert_full_int8(
      str(tmp_path), pipeline.representative_dataset(
          'stream_state_external', model, params, clips))
  with pytest.raises(ExportError, match='the device could not feed it back'):
    micro.check_full_integer(converted, 'lstm')
  unified, changed = micro.unify_state_quantization(converted)
  assert 'state_lstm_0__c' in changed
  inputs, outputs = micro.check_full_integer(unified, 'lstm')
  for name in changed:
    assert (inputs[name].scale, inputs[name].zero_point) == (
        outputs[name].scale, outputs[name].zero_point)
  # It streams under TFLM as under LiteRT's reference kernels.
  tflm = micro_runtime.tflm_stream(unified)
  litert = micro_runtime.litert_stream(unified, reference=True)
  for block in clips[0][:20]:
    q = tflm.input.quantize(block[None, None])
    np.testing.assert_allclose(tflm(q).astype(int), litert(q).astype(int),
                               atol=1)
