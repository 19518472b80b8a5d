"""The main job: synthesize speech, train, stream and evaluate.

    python -m kws_jax.quickstart [--workdir runs/quickstart] \
        [--data-dir data/synth] [--config experiments/configs/cnn_synth.py] \
        [--config.field=value ...]

1. synthesizes the built-in Speech Commands-style dataset with eSpeak NG into
   ``--data-dir`` (skipped when it is already there);
2. trains the config's model in ``--workdir`` (resumes a run already there);
3. runs the best weights on the test split non-streaming and streaming
   (320 samples per step, state reset per clip and carried across clips),
   writes the accuracies to ``WORKDIR/jax/`` and prints one summary table.
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from kws_jax import cli

_WORKDIR = flags.DEFINE_string('workdir', 'runs/quickstart',
                               'Directory of the run.')
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/synth',
                                'Where the synthetic dataset goes.')
_PER_WORD = flags.DEFINE_integer('per_word', 400,
                                 'Synthetic clips per keyword.')
DEFAULT_CONFIG = 'experiments/configs/cnn_synth.py'


def main(argv: list[str]) -> None:
  if not any(a == '--config' or a.startswith('--config=') for a in argv):
    argv = [argv[0], '--config', DEFAULT_CONFIG, *argv[1:]]
  config, rest = cli.parse_config_flags(argv)
  if len(rest) > 1:
    sys.exit(f'error: unexpected arguments: {" ".join(rest[1:])}')
  cli.configure_xla_cpu()
  # pylint: disable=g-import-not-at-top
  from kws_jax import evaluate
  from kws_jax.atomic import atomic_write
  from kws_jax.data.synth import synthesize_dataset
  from kws_jax.models import wanted_words
  from kws_jax.train import load_run, train_and_evaluate
  from kws_jax.train.loop import load_dataset
  # pylint: enable=g-import-not-at-top

  started = time.time()
  workdir, data_dir = _WORKDIR.value, _DATA_DIR.value
  print(f'[1/3] synthetic speech in {data_dir}', flush=True)
  synthesize_dataset(data_dir, words=wanted_words(config),
                     per_word=_PER_WORD.value)
  config.data.data_dir = data_dir

  print(f'[2/3] training {config.model.name} in {workdir}', flush=True)
  try:
    result = train_and_evaluate(config, workdir)
  except (ValueError, FileNotFoundError, FloatingPointError) as error:
    sys.exit(f'error: {error}')

  print('[3/3] streaming the test split 20 ms at a time', flush=True)
  _, model, params = load_run(workdir)
  dataset = load_dataset(config)
  batch = config.train.batch_size
  accuracies = {
      'non_stream': evaluate.non_streaming_accuracy(model, params, dataset,
                                                    batch_size=batch),
      'stream_reset1': evaluate.streaming_accuracy(model, params, dataset,
                                                   batch_size=batch),
      'stream_reset0': evaluate.streaming_accuracy(
          model, params, dataset, batch_size=batch, reset=False),
  }
  files = {'non_stream': 'non_stream_model_accuracy.txt',
           'stream_reset1': 'stream_model_accuracy_reset1.txt',
           'stream_reset0': 'stream_model_accuracy_reset0.txt'}
  for key, accuracy in accuracies.items():
    with atomic_write(os.path.join(workdir, 'jax', files[key]), 'w') as file:
      file.write(f'{accuracy.accuracy * 100}')

  rows = [
      ('JAX non-streaming (1 s clips)', accuracies['non_stream']),
      ('JAX streaming, state reset per clip', accuracies['stream_reset1']),
      ('JAX streaming, state carried over', accuracies['stream_reset0']),
  ]
  print(f'\n{"model form":<40}{"test accuracy":>14}{"clips":>8}')
  for name, accuracy in rows:
    print(f'{name:<40}{accuracy.accuracy:>14.2%}{accuracy.count:>8}')
  diff = accuracies['stream_reset1'].max_logit_diff
  print(f'\nstreamed vs non-streaming logits: max |diff| = {diff:.1e}')
  print(f'best validation accuracy {result["best_validation_accuracy"]:.2%} '
        f'at step {result["best_step"]}; total time '
        f'{time.time() - started:.0f} s')
  print(f'artifacts: {workdir} (curves.png, confusion_matrix.png, '
        'model_summary.txt, checkpoints/, logs/, jax/)')


if __name__ == '__main__':
  main(sys.argv)
