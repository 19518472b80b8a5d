"""Trains models on eSpeak NG speech and measures them on speech they never heard.

    python experiments/generalization.py [--runs runs/generalization] \\
        [--only NAME ...]

Needs ``data/synth`` (``python -m kws_jax.data.synth --out data/synth``),
``data/kokoro`` (``python -m kws_jax.data.kokoro --out data/kokoro
--per-word 60 --seed 1``), ``data/holdout_us``
(``python experiments/holdout_split.py --data data/synth --accents
en-us,en-us-nyc --out data/holdout_us``), and for the runs that train on
Kokoro too, a Kokoro style held out of training:

    python -m kws_jax.data.kokoro --out data/kokoro_kumo --styles jm_kumo \
        --per-word 30 --speakers 15 --seed 4
    python -m kws_jax.data.kokoro --out data/kokoro_no_kumo --styles \
        jf_alpha jf_gongitsune jf_nezumi jf_tebukuro --per-word 150 \
        --per-unknown-word 30 --seed 3

(``data/synth_kokoro``, the two training sets as one, is linked by the
script with ``kws_jax.data.combine``). Every run resumes, and finished
evaluations are kept, so the script can be stopped and started again. It
prints one markdown table: accuracy on the run's own synthetic test split,
on a held-out eSpeak accent group, and on Kokoro (another engine), each on
all 12 labels and on the keywords alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from kws_jax.data import combine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MIXED = 'synth_kokoro'  # data/synth and data/kokoro_no_kumo, linked
MIXED_SOURCES = ('synth', 'kokoro_no_kumo')
_ON_MIXED = [f'--config.data.data_dir=data/{MIXED}']

# name -> (config file, overrides, held-out datasets)
RUNS = {
    'cnn_synth': ('cnn_synth.py', [], ['kokoro', 'kokoro_kumo']),
    'embedding_dnn': ('embedding_dnn.py', [], ['kokoro', 'kokoro_kumo']),
    'embedding_cnn': ('embedding_cnn.py', [], ['kokoro']),
    'cnn_synth_no_us': ('cnn_synth.py',
                        ['--config.data.data_dir=data/holdout_us/train'],
                        ['holdout_us/heldout', 'kokoro']),
    'embedding_dnn_no_us': ('embedding_dnn.py',
                            ['--config.data.data_dir=data/holdout_us/train'],
                            ['holdout_us/heldout', 'kokoro']),
    # eSpeak NG and four Kokoro styles; the fifth (jm_kumo) held out.
    'cnn_synth_kokoro': ('cnn_synth.py', _ON_MIXED, ['kokoro_kumo', 'kokoro']),
    'embedding_dnn_kokoro': ('embedding_dnn.py', _ON_MIXED,
                             ['kokoro_kumo', 'kokoro']),
}


def run(command: list[str]) -> None:
  print('+', ' '.join(command), flush=True)
  subprocess.run(command, check=True, cwd=ROOT)


def train(name: str, runs_dir: str) -> str:
  config, overrides, _ = RUNS[name]
  if overrides == _ON_MIXED:
    combine.combine(os.path.join(ROOT, 'data', MIXED),
                    [os.path.join(ROOT, 'data', d) for d in MIXED_SOURCES])
  workdir = os.path.join(runs_dir, name)
  if not os.path.exists(os.path.join(workdir, 'accuracy_best.txt')):
    run([sys.executable, '-m', 'kws_jax.train', '--config',
         f'experiments/configs/{config}', '--workdir', workdir, *overrides])
  return workdir


def heldout(workdir: str, dataset: str) -> dict:
  name = dataset.replace('/', '_')
  path = os.path.join(workdir, 'heldout', f'{name}.json')
  if not os.path.exists(path):
    run([sys.executable, '-m', 'kws_jax.heldout', '--workdir', workdir,
         '--data-dir', os.path.join('data', dataset), '--name', name])
  with open(path, encoding='utf-8') as file:
    return json.load(file)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', default='runs/generalization')
  parser.add_argument('--only', nargs='*', default=list(RUNS))
  args = parser.parse_args()
  rows = []
  for name in args.only:
    workdir = train(name, args.runs)
    with open(os.path.join(ROOT, workdir, 'accuracy_best.txt')) as file:
      own = float(file.read()) / 100
    results = {d: heldout(workdir, d) for d in RUNS[name][2]}
    rows.append((name, own, results))
  print('\n| run | own test split | held-out set | all labels | keywords |')
  print('|---|---|---|---|---|')
  for name, own, results in rows:
    for dataset, result in results.items():
      print(f'| {name} | {own:.1%} | {dataset} | {result["accuracy"]:.1%} | '
            f'{result["keyword_accuracy"]:.1%} |')


if __name__ == '__main__':
  main()
