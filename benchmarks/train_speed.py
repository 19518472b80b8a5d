"""Training speed of the paper CNN, DS-CNN and GRU: kws_jax against Keras 3.

    python benchmarks/train_speed.py [--batch 100] [--steps 20] [--data-dir DIR]

Runs, each in its own process so that XLA and TensorFlow settings do not mix,
for each model (kws_jax and Keras alternating):
  * kws_jax's jitted train step (Adam, dropout, MFCCs of raw audio computed
    inside the step as in training) with in-memory batches, with the XLA:CPU
    flags kws_jax's tools set (YNNPACK convolutions); for the CNN also with
    one host device per core (data parallel, as the training loop shards
    batches), with ``train.microbatches`` (the batch's gradient summed
    over micro-batches of 10 computed one after another; caches then hold
    their activations) and with XLA's defaults (im2col convolutions);
  * the same architecture in Keras 3 (``kws_jax.keras_reference``,
    TensorFlow backend, oneDNN), trained with ``train_on_batch`` on MFCCs
    [49, 20];
  * kws_jax's raw-audio CNN train step fed by the real input pipeline (full
    augmentation) against the same step on one in-memory batch, to show
    whether loading limits training (needs a dataset; the default synthetic
    one is generated into --data-dir if missing).
Prints examples/s (median step time over --steps steps after 3 warm-up steps)
and the kws_jax / Keras ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, REPO)

from benchmarks.timing import median_seconds  # pylint: disable=g-import-not-at-top,wrong-import-position

MODELS = ('cnn', 'ds_cnn', 'gru')


def model_config(name: str):
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(f'experiments.configs.{name}').get_config()


def jax_part(args, preprocess: str = 'mfcc', pipeline: bool = False) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from kws_jax import data  # pylint: disable=g-import-not-at-top
  from kws_jax.cli import preferred_chunk_frames, preferred_conv_implementation  # pylint: disable=g-import-not-at-top
  from kws_jax.models import build_model  # pylint: disable=g-import-not-at-top
  from kws_jax.train import optim, parallel, steps as train_steps  # pylint: disable=g-import-not-at-top

  config = model_config(args.model)
  config.model.preprocess = preprocess
  config.train.batch_size = args.batch
  config.train.microbatches = args.microbatches
  model = build_model(
      config, auto_conv_implementation=preferred_conv_implementation(),
      auto_chunk_frames=preferred_chunk_frames())
  schedule = optim.learning_rate_schedule(config.schedule)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  # Sharded over every device as the training loop does it (one device
  # unless XLA_FLAGS forces several host devices).
  mesh = parallel.make_mesh()
  parallel.check_batch_size(args.batch, mesh, args.microbatches)
  replicated = parallel.replicated(mesh)
  batch_sharding = parallel.batch_sharding(mesh)
  state = jax.device_put(train_steps.init_state(model, optimizer, 0),
                         replicated)
  state_shardings = jax.tree.map(lambda _: replicated, state)
  step_fn = jax.jit(train_steps.make_train_step(model, optimizer, schedule,
                                                config, mesh=mesh),
                    in_shardings=(state_shardings, batch_sharding),
                    out_shardings=(state_shardings, replicated),
                    donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = {'audio': (0.1 * rng.standard_normal((args.batch, 16000))
                     ).astype(np.float32),
           'label': rng.integers(0, 12, args.batch).astype(np.int32),
           'weight': np.ones(args.batch, np.float32)}
  holder = {'state': state}

  def run(next_batch):
    holder['state'], metrics = step_fn(
        holder['state'], parallel.put_batch(next_batch(), batch_sharding))
    jax.block_until_ready(metrics)

  in_memory = median_seconds(lambda: run(lambda: batch), args.steps,
                             warmup=3)
  result = {'in_memory': args.batch / in_memory, 'devices': mesh.size,
            'conv': next((layer.implementation for layer in model.net.layers
                          if hasattr(layer, 'implementation')), '-')}
  if pipeline:
    config.data.data_dir = args.data_dir
    from kws_jax.train.loop import load_dataset  # pylint: disable=g-import-not-at-top
    batches = data.train_batches(load_dataset(config), args.batch, seed=0)
    piped = median_seconds(lambda: run(lambda: next(batches)), args.steps,
                           warmup=3)
    result['pipeline'] = args.batch / piped
  return result


def keras_part(args) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from kws_jax import keras_reference  # pylint: disable=g-import-not-at-top

  flags = model_config(args.model).model
  model = {'cnn': lambda: keras_reference.paper_cnn(tf, flags.dropout1),
           'ds_cnn': lambda: keras_reference.paper_ds_cnn(tf, flags),
           'gru': lambda: keras_reference.paper_gru(tf)}[args.model]()
  model.compile(
      optimizer=tf.keras.optimizers.Adam(5e-4, epsilon=1e-8),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=['accuracy'])
  rng = np.random.default_rng(0)
  x = rng.standard_normal((args.batch, 49, 20)).astype(np.float32)
  y = rng.integers(0, 12, args.batch)
  seconds = median_seconds(lambda: model.train_on_batch(x, y), args.steps,
                           warmup=3)
  return {'in_memory': args.batch / seconds, 'tf': tf.__version__}


def run_part(part: str, args, env_overrides: dict, microbatches: int = 1
             ) -> dict:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', **env_overrides)
  command = [sys.executable, __file__, '--part', part, '--batch',
             str(args.batch), '--steps', str(args.steps), '--data-dir',
             args.data_dir, '--model', args.model, '--microbatches',
             str(microbatches)]
  out = subprocess.run(command, env=env, capture_output=True, text=True,
                       check=False)
  if out.returncode:
    raise RuntimeError(f'{part} failed:\n{out.stderr[-3000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=100)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--data-dir', default='data/synth')
  parser.add_argument('--model', default='cnn', choices=MODELS,
                      help=argparse.SUPPRESS)
  parser.add_argument('--part', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--microbatches', type=int, default=1,
                      help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.part:  # child process
    if args.part.startswith('jax'):
      from kws_jax import cli  # pylint: disable=g-import-not-at-top
      if args.part != 'jax-default':
        cli.configure_xla_cpu()
      result = jax_part(args, preprocess='raw' if args.part == 'jax-pipeline'
                        else 'mfcc', pipeline=args.part == 'jax-pipeline')
    else:
      result = keras_part(args)
    print(json.dumps(result))
    return

  if not os.path.isdir(args.data_dir):
    from kws_jax.data.synth import synthesize_dataset  # pylint: disable=g-import-not-at-top
    synthesize_dataset(args.data_dir)
  default_xla = {'KWS_JAX_XLA_DEFAULTS': '0'}
  cores = os.cpu_count() or 1
  per_core = {'XLA_FLAGS': f'{os.environ.get("XLA_FLAGS", "")} '
                           f'--xla_force_host_platform_device_count={cores}'}
  rows = []  # (model, trainer, result)
  for model in MODELS:
    args.model = model
    # kws_jax and Keras alternate, so that a slow spell of a shared machine
    # does not fall on one of them only.
    rows.append((model, 'kws_jax', run_part('jax-fast', args, {})))
    rows.append((model, 'Keras 3 / TF', run_part('keras', args, {})))
    if model == 'cnn':
      rows.append((model, f'kws_jax, {args.batch // 10} micro-batches',
                   run_part('jax-fast', args, {}, args.batch // 10)))
      rows.append((model, f'kws_jax on {cores} host devices',
                   run_part('jax-fast', args, per_core)))
      rows.append((model, 'kws_jax, XLA defaults',
                   run_part('jax-default', args, default_xla)))
  args.model = 'cnn'
  pipeline = run_part('jax-pipeline', args, {})
  keras = {model: result['in_memory'] for model, trainer, result in rows
           if trainer.startswith('Keras')}
  print(f'Train step, batch {args.batch}, Adam, {cores} cores (median of '
        f'{args.steps} steps); kws_jax computes the MFCCs of raw audio '
        'inside its step, Keras is given them')
  print(f'{"model":<8}{"trainer":<28}{"conv":<9}{"examples/s":>11}'
        f'{"vs Keras":>10}')
  for model, trainer, result in rows:
    print(f'{model:<8}{trainer:<28}{result.get("conv", "oneDNN"):<9}'
          f'{result["in_memory"]:>11.0f}'
          f'{result["in_memory"] / keras[model]:>9.2f}x')
  print(f'\nCNN raw-audio train step (frontend inside), YNNPACK conv: '
        f'{pipeline["in_memory"]:.0f} examples/s on one in-memory batch, '
        f'{pipeline["pipeline"]:.0f} fed by the augmenting pipeline '
        f'({args.data_dir}).')


if __name__ == '__main__':
  main()
