"""One round of hard-negative mining on top of a `python -m kws_jax.wakeword` run.

    python experiments/wakeword_mining.py --workdir runs/heyjax \\
        [--minutes 120] [--threshold 0.5]

Streams the run's best weights over a new keyword-free stream (the training
role's content, a seed no other stream uses), keeps the windows where it
fires (kws_jax.wakeword.mining), trains the same config again from scratch
with those windows added to the bank (`<workdir>_mined`), and measures both
runs on the run's held-out evaluation streams, clean and in rooms. Steps
are kept on disk. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from kws_jax import cli
from kws_jax import config as kws_config
from kws_jax.data import synth_stream
from kws_jax.data import windows as windows_lib
from kws_jax.detect.runners import read_labels
from kws_jax.models import build_model
from kws_jax.train import load_run, train_and_evaluate
from kws_jax.wakeword import mining, selection
from kws_jax.wakeword import recipe as recipe_lib
from kws_jax.wakeword import streams as streams_lib

from experiments import wakeword_checkpoints

MINING_SEED = 1500  # the training role's range, used by no stream_plan
BUDGETS = (1.0, 2.0, 5.0, 10.0, 100.0)


def mined_bank(workdir: str, layout: recipe_lib.Layout, minutes: float,
               threshold: float) -> str:
  path = os.path.join(layout.data, 'mined_round1.npz')
  if os.path.exists(path):
    return path
  with open(os.path.join(layout.data, 'recipe.json'), encoding='utf-8') as f:
    made = json.load(f)
  keywords = made['keywords']
  recipe = recipe_lib.Recipe(**made['sizes'])
  wav = layout.stream('mining')
  if not os.path.exists(wav):
    vocab = recipe_lib.negatives(keywords, recipe)
    content = synth_stream.StreamContent(
        keyword_probability=0.0, in_sentence_probability=0.5,
        distractors=vocab.words, sentence_words=vocab.words)
    synth_stream.synthesize_stream(wav, minutes, seed=MINING_SEED,
                                   words=keywords, content=content,
                                   progress=False)
  config, model, params = load_run(workdir, 'best')
  point = selection.read_operating_point(workdir)
  bank, false_accepts = mining.mine(
      model, params, read_labels(workdir, model.label_count),
      streams_lib.load_streams([wav]), threshold=threshold,
      window_samples=kws_config.clip_layout(config)['clip_samples'],
      smoothing_ms=point['smoothing_ms'], progress=True)
  windows_lib.save_bank(path, bank)
  print(f'{path}: {false_accepts} false accepts at {threshold} in '
        f'{minutes:g} min, {len(bank)} windows', flush=True)
  return path


def retrain(workdir: str, bank: str) -> str:
  target = workdir.rstrip('/') + '_mined'
  if selection.read_operating_point(target):
    return target
  config, model, _ = load_run(workdir, 'best')
  config.data.window_banks = f'{config.data.window_banks},{bank}'
  point = selection.read_operating_point(workdir)
  layout = recipe_lib.Layout(workdir)
  selector = selection.StreamSelector(
      build_model(config), read_labels(workdir, model.label_count),
      streams_lib.load_streams([layout.stream('validation'),
                                layout.stream('validation_negative')]),
      target_fa_per_hour=point['target_fa_per_hour'])
  train_and_evaluate(config, target, selector=selector)
  _, _, params = load_run(target, 'best')
  selection.write_operating_point(target, selector.operating_point(params))
  return target


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--minutes', type=float, default=120.0)
  parser.add_argument('--threshold', type=float, default=0.5)
  args = parser.parse_args()
  cli.configure_xla_cpu()
  os.chdir(ROOT)
  layout = recipe_lib.Layout(args.workdir)
  bank = mined_bank(args.workdir, layout, args.minutes, args.threshold)
  mined = retrain(args.workdir, bank)
  print('\n| run | streams | ' + ' | '.join(f'FRR at {b:g} FA/h'
                                            for b in BUDGETS) + ' |')
  print('|---|---|' + '---:|' * len(BUDGETS))
  for run in (args.workdir, mined):
    for name, paths in wakeword_checkpoints.evaluation_sets(run).items():
      points = wakeword_checkpoints.evaluate(run, 'best', name, paths)
      cells = wakeword_checkpoints.frr_cells(points, BUDGETS)
      print(f'| {os.path.basename(run)} | {name} | ' + ' | '.join(cells) +
            ' |')

if __name__ == '__main__':
  main()
