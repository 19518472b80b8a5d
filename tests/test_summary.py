"""The summary CLI prints the model table and explains bad configs."""

import importlib
import os
import subprocess
import sys

import pytest

from experiments.configs import cnn as cnn_config
from kws_jax import layers
from kws_jax.frontend import MfccFrontend
from kws_jax.models import Model, build_model
from kws_jax.summary import model_summary, step_macs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_summary(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-m', 'kws_jax.summary',
       '--config', 'experiments/configs/cnn.py', *flags],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))


def test_prints_published_table_and_state():
  result = run_summary('--config.model.preprocess=mfcc',
                       '--config.model.label_count=14')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == "Model: cnn (preprocess='mfcc', 14 labels)"
  rows = {line.split()[0]: line for line in lines if '(Conv2D)' in line}
  assert rows['conv2d_6'].split()[2:] == ['(None,', '1,', '11,', '128)',
                                          '82,048']
  assert 'Total params: 607,246' in lines
  assert 'Total state: 40,872 values (163,488 bytes) in 7 tensors.' in lines
  # Hand count: per conv, output features * filters * k_t * k_f * channels in;
  # dense 1408*128 + 128*256 + 256*14.
  conv_macs = (18 * 64 * 3 * 3 * 1 + 16 * 64 * 5 * 3 * 64 + 14 * 64 * 5 * 3 * 64
               + 12 * 64 * 5 * 3 * 64 + 11 * 128 * 5 * 2 * 64
               + 11 * 64 * 5 * 1 * 128 + 11 * 128 * 10 * 1 * 64)
  dense_macs = 1408 * 128 + 128 * 256 + 256 * 14
  assert (f'Multiply-accumulates per step: {conv_macs + dense_macs:,} '
          '(0 in the frontend).') in lines


def test_sequential_step_macs_sum_its_layers():
  config = cnn_config.get_config()
  model = build_model(config)
  per_layer = step_macs(model)
  assert list(per_layer)[:3] == ['frontend', 'expand_dims', 'conv2d_0']
  assert per_layer['expand_dims'] == 0 and per_layer['conv2d_0'] == 10_368
  assert model.net.step_macs(model.input_shape) == sum(per_layer.values())


def test_raw_audio_model_steps_320_samples():
  result = run_summary()
  assert result.returncode == 0, result.stderr
  assert 'Total params: 606,732' in result.stdout
  assert 'a step takes (1, 320) (20 ms)' in result.stdout
  assert f'{"frontend":<44}(1, 320)' in result.stdout
  # The FFT's 1024/2 log2(1024) butterflies of 4 MACs, a 446 x 40 mel matrix
  # (bins 20-7000 Hz) and a 40 x 20 DCT.
  frontend_macs = 2 * 1024 * 10 + 446 * 40 + 40 * 20
  assert (f'Multiply-accumulates per step: {5_059_712 + frontend_macs:,} '
          f'({frontend_macs:,} in the frontend).') in result.stdout


@pytest.mark.parametrize('flag, message', [
    ('--config.model.cnn_fliters=64', "--config.model.cnn_fliters: the config "
     "has no field 'cnn_fliters'. Did you mean 'cnn_filters'?"),
    ('--config.frontend.window_stride_ms=40',
     'conv2d_4: kernel 5 with dilation 2 spans 9 frames in time, but only 7 '
     'remain'),
    ('--config.model.dropout1=lots', 'could not convert string to float'),
])
def test_bad_flags_fail_with_one_line(flag, message):
  result = run_summary(flag)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr


def test_summary_lists_the_layers_inside_residual_blocks():
  block = layers.Residual('block', layers.Sequential('body', (
      layers.Conv2D('inner', 2, (3, 1), time_padding='causal'),
      layers.BatchNorm('inner_norm'))))
  net = layers.Sequential('net', (
      layers.ExpandDims(), layers.Conv2D('conv', 2, (1, 20)), block,
      layers.Flatten('flatten', window=5), layers.Dense('logits', 3)))
  model = Model(name='tiny', net=net, input_shape=(20,), clip_length=5,
                label_count=3, frontend=MfccFrontend())
  lines = model_summary(model).splitlines()
  rows = [line.split('(')[0] for line in lines if line.startswith(' ')]
  assert [row.rstrip() for row in rows] == [
      '  body', '    inner', '    inner_norm']
  assert any(line.startswith('block (Residual)') and line.endswith(' 22')
             for line in lines)  # inner 3*2*2+2, inner_norm 4*2


def test_a_step_of_several_frames_says_its_duration():
  config = importlib.import_module('experiments.configs.svdf_resnet').get_config()
  model = build_model(config)
  assert (model.block_size, model.step_ms) == (1280, 80.0)
  assert 'a step takes (1, 1280) (80 ms)' in model_summary(model)
