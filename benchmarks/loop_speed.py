"""Training throughput: the train step alone and the whole loop, by input path.

    python benchmarks/loop_speed.py [--models cnn,ds_cnn,gru] [--steps 10]
        [--batch 100] [--data-dir data/synth]

For each model (experiments/configs/<model>.py, raw audio in, the frontend
inside the step) and each input path of the training loop
(``kws_jax.train.loop.training_inputs``):
  * host: the loader threads read and augment (``data.device_augmentation
    'off'``);
  * device augmentation: the loader reads and batches, the jitted step
    augments (``'on'``);
  * clips on the device: the training split is read once and the step
    gathers and augments (``data.clips_on_device 'on'``);
prints examples/s of the step alone (one batch, repeated), of the loop as
the trainer runs it (next batch, put on the device, step, read the
metrics), and the loop's share of time spent waiting for the loader. The
first line names the JAX backend and device, so the same script serves a
GPU (benchmarks/gpu.sh). The synthetic default dataset is made in
--data-dir if it is missing; with --noise-data, a dataset of noise clips in
Speech Commands' layout instead (speed does not depend on what is said, and
it needs no eSpeak NG, which a GPU image may lack).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from kws_jax import cli
from kws_jax.models import build_model
from kws_jax.train import loop, optim, parallel, steps

PATHS = {  # name: (data.device_augmentation, data.clips_on_device)
    'host': ('off', 'off'),
    'device augmentation': ('on', 'off'),
    'clips on the device': ('on', 'on'),
}


def write_noise_dataset(root: str, clips_per_word: int = 300) -> None:
  """Speech Commands' layout, every clip 1 s of noise (16-bit, 16 kHz)."""
  from kws_jax.data import audio, speech_commands  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  words = speech_commands.DEFAULT_WANTED_WORDS + ('cat', 'dog', 'bird')
  for word in words:
    for i in range(clips_per_word):
      audio.write_wav(os.path.join(root, word, f'{i:04x}_nohash_0.wav'),
                      rng.uniform(-0.3, 0.3, 16000))
  for i in range(2):
    audio.write_wav(os.path.join(root, speech_commands.BACKGROUND_NOISE_DIR,
                                 f'noise{i}.wav'),
                    rng.uniform(-0.5, 0.5, 60 * 16000))


def measure(model_name: str, path: str, args) -> dict[str, float]:
  config = importlib.import_module(
      f'experiments.configs.{model_name}').get_config()
  config.model.preprocess = 'raw'
  config.data.data_dir = args.data_dir
  config.train.batch_size = args.batch
  (config.data.device_augmentation,
   config.data.clips_on_device) = PATHS[path]
  model = build_model(
      config, auto_conv_implementation=cli.preferred_conv_implementation(),
      auto_chunk_frames=cli.preferred_chunk_frames())
  schedule = optim.learning_rate_schedule(config.schedule)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  mesh = parallel.make_mesh()
  replicated = parallel.replicated(mesh)
  batch_sharding = parallel.batch_sharding(mesh)
  state = jax.device_put(steps.init_state(model, optimizer, 0), replicated)
  shardings = jax.tree.map(lambda _: replicated, state)
  dataset = loop.load_dataset(config)
  inputs = loop.training_inputs(config, model, optimizer, schedule, dataset,
                                mesh, shardings, 0, None, progress=False)
  run = inputs.train_step

  first = parallel.put_batch(next(inputs.batches), batch_sharding)
  for _ in range(args.warmup):  # compiles; the step alone, one batch
    state, metrics = run(state, first, *inputs.arguments)
  jax.block_until_ready(metrics)
  began = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = run(state, first, *inputs.arguments)
  jax.block_until_ready(metrics)
  step_alone = args.steps * args.batch / (time.perf_counter() - began)

  waited = 0.0
  began = time.perf_counter()
  for _ in range(args.steps):  # as train_and_evaluate's loop
    waiting = time.perf_counter()
    batch = parallel.put_batch(next(inputs.batches), batch_sharding)
    waited += time.perf_counter() - waiting
    state, metrics = run(state, batch, *inputs.arguments)
    jax.device_get(metrics)
  seconds = time.perf_counter() - began
  return {'step': step_alone, 'loop': args.steps * args.batch / seconds,
          'input_share': waited / seconds}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='cnn,ds_cnn,gru')
  parser.add_argument('--paths', default=','.join(PATHS),
                      help='comma-separated input paths: ' + ', '.join(PATHS))
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--batch', type=int, default=100)
  parser.add_argument('--data-dir', default='data/synth')
  parser.add_argument('--noise-data', action='store_true',
                      help='make a dataset of noise clips if --data-dir is '
                      'missing, instead of synthesizing speech')
  args = parser.parse_args()
  cli.configure_xla_cpu()
  paths = [p.strip() for p in args.paths.split(',') if p.strip()]
  unknown = sorted(set(paths) - set(PATHS))
  if unknown:
    parser.error(f'--paths: unknown {unknown}; expected some of {list(PATHS)}')
  if not os.path.isdir(args.data_dir) and args.noise_data:
    write_noise_dataset(args.data_dir)
  elif not os.path.isdir(args.data_dir):
    from kws_jax.data.synth import synthesize_dataset  # pylint: disable=g-import-not-at-top
    synthesize_dataset(args.data_dir)
  device = jax.devices()[0]
  print(f'{jax.default_backend()} ({device.device_kind}), {jax.device_count()} '
        f'device(s), {os.cpu_count()} host cores; batch {args.batch}, '
        f'{args.steps} steps after {args.warmup} warm-up steps', flush=True)
  print(f'{"model":<8}{"input path":<22}{"step ex/s":>11}{"loop ex/s":>11}'
        f'{"waiting for input":>19}', flush=True)
  for model_name in [m.strip() for m in args.models.split(',') if m.strip()]:
    for path in paths:
      result = measure(model_name, path, args)
      print(f'{model_name:<8}{path:<22}{result["step"]:>11.0f}'
            f'{result["loop"]:>11.0f}{result["input_share"]:>18.0%}',
            flush=True)


if __name__ == '__main__':
  main()
