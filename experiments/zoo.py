"""The streaming model zoo side by side: size, work, speed and a short run's accuracy.

    python experiments/zoo.py [--models cnn,ds_cnn,gru,crnn] [--steps 400] \
        [--data data/synth] [--out runs/zoo]

For each model of ``experiments/configs/<model>.py`` (the paper's settings,
raw audio in): trains ``--steps`` steps on the synthetic data (batch 50, one
learning rate: 0.001, or the first rate of the config's schedule where the
config sets its own; no SpecAugment), exports every form, and measures:

* parameters, the audio one streaming step takes (20 ms for most, 10 ms
  for the models on 10 ms frames, 80 ms for svdf_resnet's 4-frame blocks) and
  the multiply-accumulates of one step;
* TFLite sizes (float and int8 streaming, external state);
* streaming latency per step on 1 thread: the float and int8 TFLite models
  under LiteRT, and the jitted JAX step (median over 200 steps);
* training examples/s of the jitted train step at batch 50;
* test accuracy of the JAX model and of the int8 TFLite model;
* the full-integer model for TensorFlow Lite Micro (``export --micro``):
  flash and tensor-arena bytes, its int8 streaming test accuracy under
  TFLM (reset1) and TFLM's time per step on this host (a relative figure: TFLM's
  reference kernels are not tuned for x86).

Writes ``<out>/zoo.json`` (atomically; a finished model is not run again)
and prints the Markdown table of ``experiments/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import tqdm

from kws_jax import atomic, cli
from kws_jax import config as kws_config
from kws_jax.export import export_run
from kws_jax.export.runtime import TfliteStreaming
from kws_jax.models import build_model
from kws_jax.train import load_run, optim, steps, train_and_evaluate

BATCH = 50
LATENCY_STEPS = 200
LEARNING_RATE = 0.001  # for the configs that keep the default schedule


def config_for(name: str, data_dir: str, num_steps: int,
               wanted_words: str | None = None):
  config = importlib.import_module(f'experiments.configs.{name}').get_config()
  config.model.preprocess = 'raw'
  config.data.data_dir = data_dir
  if wanted_words:
    config.data.wanted_words = wanted_words
  config.schedule.update(how_many_training_steps=str(num_steps),
                         learning_rate=str(learning_rate(config)))
  config.train.update(batch_size=BATCH,
                      eval_step_interval=max(1, num_steps // 2))
  return config


def learning_rate(config) -> float:
  """The zoo's rate for ``config``: its own first rate if it sets one."""
  rates = config.schedule.learning_rate
  if rates == kws_config.default_config().schedule.learning_rate:
    return LEARNING_RATE
  return float(rates.split(',')[0])


def median_ms(function, repeats: int = LATENCY_STEPS) -> float:
  """Median wall time of ``function()`` in milliseconds, after two warm-ups."""
  for _ in range(2):
    function()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def tflite_latency_ms(path: str, block: int) -> float:
  runner = TfliteStreaming(path, num_threads=1)
  audio = np.random.default_rng(0).normal(0, 0.1, (1, block)).astype(
      np.float32)
  return median_ms(lambda: runner(audio))


def jax_step_ms(model, params) -> float:
  step = jax.jit(model.step)
  state = model.init_state(1)
  block = jnp.asarray(np.random.default_rng(0).normal(
      0, 0.1, (1, model.block_size)), jnp.float32)

  def run():
    jax.block_until_ready(step(params, state, block))

  return median_ms(run)


def train_examples_per_s(config) -> float:
  model = build_model(
      config, auto_conv_implementation=cli.preferred_conv_implementation(),
      auto_chunk_frames=cli.preferred_chunk_frames())
  schedule = optim.learning_rate_schedule(config.schedule)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  state = steps.init_state(model, optimizer, 0)
  train_step = jax.jit(steps.make_train_step(model, optimizer, schedule,
                                             config), donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = {'audio': jnp.asarray(rng.normal(0, 0.1, (BATCH, model.clip_length)),
                                jnp.float32),
           'label': jnp.asarray(rng.integers(0, model.label_count, BATCH)),
           'weight': jnp.ones(BATCH, jnp.float32)}
  for _ in range(2):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  start, repeats = time.perf_counter(), 5
  for _ in range(repeats):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  return BATCH * repeats / (time.perf_counter() - start)


def speeds(name: str, args, model=None, params=None) -> dict:
  """Latencies and training throughput of the trained, exported ``name``
  (its ``model`` and ``params`` loaded here unless given)."""
  config = config_for(name, args.data, args.steps, args.wanted_words)
  workdir = os.path.join(args.out, name)
  if model is None:
    model = build_model(
        config, auto_conv_implementation=cli.preferred_conv_implementation(),
        auto_chunk_frames=cli.preferred_chunk_frames())
    _, _, params = load_run(workdir)
  external = os.path.join(workdir, 'tflite_stream_state_external',
                          'stream_state_external.tflite')
  int8 = os.path.join(workdir, 'quantize_int8_tflite_stream_state_external',
                      'stream_state_external.tflite')
  return {
      'latency_ms_tflite_float': tflite_latency_ms(external, model.block_size),
      'latency_ms_tflite_int8': tflite_latency_ms(int8, model.block_size),
      'latency_ms_jax_step': jax_step_ms(model, params),
      'train_examples_per_s': train_examples_per_s(config),
  }


def measure(name: str, args) -> dict:
  config = config_for(name, args.data, args.steps, args.wanted_words)
  workdir = os.path.join(args.out, name)
  result = train_and_evaluate(config, workdir, progress=True)
  manifest = export_run(workdir, progress=True, micro=True)
  model = build_model(
      config, auto_conv_implementation=cli.preferred_conv_implementation(),
      auto_chunk_frames=cli.preferred_chunk_frames())
  _, _, params = load_run(workdir)
  files = manifest['tflite']
  return {
      'params': int(sum(np.prod(p.shape) for p in jax.tree.leaves(params))),
      'macs_per_step': int(model.net.step_macs(())),
      'tflite_bytes_float': files['tflite_stream_state_external']['bytes'],
      'tflite_bytes_int8': files[
          'quantize_int8_tflite_stream_state_external']['bytes'],
      **speeds(name, args, model, params),
      'step_ms': model.step_ms,
      'test_accuracy': 100 * result['test_accuracy'],
      'test_accuracy_int8_tflite': files[
          'quantize_int8_tflite_non_stream']['accuracy']['non_stream'],
      'steps': args.steps,
      'learning_rate': float(config.schedule.learning_rate),
      'test_accuracy_stream_reset1': manifest['accuracy_test_split']['jax'][
          'stream_reset1'],
      **micro_figures(manifest['micro']),
  }


def micro_figures(entry: dict) -> dict:
  """The zoo's columns of the manifest's ``micro`` entry."""
  return {
      'micro_flash_bytes': entry['flash_bytes'],
      'micro_arena_bytes': entry['arena_bytes'],
      'micro_macs_per_step': entry['macs_per_step'],
      'micro_accuracy_reset1': entry['accuracy_test_split']['tflm_reset1'],
      'micro_accuracy_litert_reset1': entry['accuracy_test_split'][
          'litert_reset1'],
      'micro_tflm_ms_per_step': entry['tflm_vs_litert'][
          'tflm_ms_per_step_host'],
      'micro_tflm_vs_litert': {
          k: v for k, v in entry['tflm_vs_litert'].items()
          if k.startswith('litert')},
  }


def table(results: dict) -> str:
  lines = ['| model | params | step | MACs/step | TFLite float / int8 | '
           'TFLM arena | latency/step float / int8 / JAX | train ex/s | '
           'test acc (int8) |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
  for name, r in results.items():
    arena = (f'{r["micro_arena_bytes"] / 1024:,.1f} KiB'
             if 'micro_arena_bytes' in r else 'not measured')
    lines.append(
        f'| {name} | {r["params"]:,} | {r["step_ms"]:g} ms | '
        f'{r["macs_per_step"]:,} | '
        f'{r["tflite_bytes_float"] / 1024:,.0f} / '
        f'{r["tflite_bytes_int8"] / 1024:,.0f} KiB | {arena} | '
        f'{r["latency_ms_tflite_float"]:.2f} / '
        f'{r["latency_ms_tflite_int8"]:.2f} / '
        f'{r["latency_ms_jax_step"]:.2f} ms | '
        f'{r["train_examples_per_s"]:.0f} | {r["test_accuracy"]:.1f}% '
        f'({r["test_accuracy_int8_tflite"]:.1f}%) |')
  return '\n'.join(lines)


def micro_table(results: dict) -> str:
  """The full-integer (TFLM) rows of the models measured with --micro."""
  lines = ['| model | flash | arena | MACs/step | float stream acc | '
           'full-int8 stream acc | TFLM ms/step (host) |',
           '|---|---:|---:|---:|---:|---:|---:|']
  for name, r in results.items():
    if 'micro_arena_bytes' not in r:
      continue
    lines.append(
        f'| {name} | {r["micro_flash_bytes"] / 1024:,.0f} KiB | '
        f'{r["micro_arena_bytes"] / 1024:,.1f} KiB | '
        f'{r["micro_macs_per_step"]:,} | '
        f'{r["test_accuracy_stream_reset1"]:.1f}% | '
        f'{r["micro_accuracy_reset1"]:.1f}% | '
        f'{r["micro_tflm_ms_per_step"]:.2f} |')
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='cnn,ds_cnn,gru,crnn')
  parser.add_argument('--steps', type=int, default=400)
  parser.add_argument('--data', default='data/synth')
  parser.add_argument('--out', default='runs/zoo')
  parser.add_argument('--wanted-words', default=None,
                      help='default: the configs\' ten words')
  parser.add_argument('--remeasure-speed', action='store_true',
                      help='measure the latencies and training speed of '
                      'finished models again (on a quiet machine)')
  args = parser.parse_args()
  cli.configure_xla_cpu()
  path = os.path.join(args.out, 'zoo.json')
  results = {}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as file:
      results = json.load(file)
  for name in tqdm.tqdm(args.models.split(','), desc='models'):
    if name in results and results[name]['steps'] == args.steps:
      if args.remeasure_speed:
        results[name].update(speeds(name, args))
        atomic.write_json(path, results)
      continue
    results[name] = measure(name, args)
    atomic.write_json(path, results)
  for name, result in results.items():  # rows written before step_ms
    result.setdefault('step_ms', build_model(config_for(
        name, args.data, args.steps, args.wanted_words)).step_ms)
  print(table(results))
  print()
  print(micro_table(results))


if __name__ == '__main__':
  main()
