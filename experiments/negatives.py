"""Negatives and streaming-aware training: what each lever buys in FA/h.

    python experiments/negatives.py [--runs runs/negatives] [--only NAME ...]

Trains the speech-embedding dense head (experiments/configs/embedding_dnn.py)
in rounds, each adding one lever, and measures every run on the same held-out
streams: FRR at 0.5, 1 and 2 false accepts per hour.

  clips    2,000 clips per keyword; _unknown_ from 3,000 frequent English
           words (2 clips each) and the keywords' phonetic near-misses (100
           each), homophones and extensions left out (data/synth_vocab2);
           the best checkpoint chosen by FRR at 2 FA/h on validation
           streams;
  streams  + half of each batch from windows cut from 6 hours of training
           streams (keywords alone or inside sentences; positives end
           50-500 ms after the keyword, 3,000 keyword-free windows/hour);
  mined    + the windows of 2 hours of keyword-free audio on which `streams`
           fires at threshold 0.5 (hard-negative mining).

Baselines, trained before on data/synth (runs/generalization): `cnn_synth`
(MFCC CNN) and `embedding_dnn` (25 auxiliary words, accuracy selection).

Data (python -m kws_jax.data.synth / synth_stream; every stream is spoken by
speakers drawn afresh, and no evaluation audio is trained or selected on):
  data/synth_vocab2: --per-word 2000 --vocabulary 3000 --per-unknown-word 2;
  data/streams/train_60min_seed601..606: windows (--in-sentence-probability
    0.5 --vocabulary 5000);
  data/streams/neg_mine_120min_seed100: mining (--keyword-probability 0
    --vocabulary 5000);
  validation: val_20min_seed300 (--in-sentence-probability 0.5) +
    neg_val_30min_seed301 (keyword-free);
  evaluation: eval_30min_seed7 (the default stream), eval_sent_30min_seed500
    (keywords in sentences) and neg_eval_180min_seed200 (3 h keyword-free).

Every step is kept on disk and skipped when done (runs resume), so the script
can be stopped and started again. It prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import embedding_dnn
from kws_jax import cli
from kws_jax import config as kws_config
from kws_jax.atomic import atomic_write
from kws_jax.data import windows as windows_lib
from kws_jax.detect import metrics
from kws_jax.detect.detector import DEFAULT_SMOOTHING_MS
from kws_jax.detect.runners import read_labels
from kws_jax.models import build_model
from kws_jax.train import load_run, train_and_evaluate
from kws_jax.wakeword import mining, selection
from kws_jax.wakeword import streams as streams_lib

STREAMS = 'data/streams'
MINING_STREAMS = [f'{STREAMS}/neg_mine_120min_seed100.wav']
VALIDATION_STREAMS = [f'{STREAMS}/val_20min_seed300.wav',
                      f'{STREAMS}/neg_val_30min_seed301.wav']
EVALUATION_STREAMS = [f'{STREAMS}/eval_30min_seed7.wav',
                      f'{STREAMS}/eval_sent_30min_seed500.wav',
                      f'{STREAMS}/neg_eval_180min_seed200.wav']
TARGET_FA_PER_HOUR = 2.0
BUDGETS = (0.5, 1.0, 2.0)
REFERENCE_BUDGETS = (10.0, 50.0)  # where the DET curves differ today
MINING_THRESHOLD = 0.5
BASELINES = {'cnn_synth': 'runs/generalization/cnn_synth',
             'embedding_dnn': 'runs/generalization/embedding_dnn'}
TRAIN_STREAMS = [f'{STREAMS}/train_60min_seed{seed}.wav'
                 for seed in range(601, 607)]
STREAM_NEGATIVES_PER_HOUR = 3000
# name -> (window banks, fraction of each batch drawn from them)
RUNS = {
    'clips': ([], 0.0),
    'streams': (['streams6h'], 0.5),
    'mined': (['streams6h', 'mined_streams'], 0.5),
}
# bank -> the run it is mined with
MINED_BANKS = {'mined_streams': 'streams'}


def config_for(name: str, banks_dir: str):
  banks, fraction = RUNS[name]
  config = embedding_dnn.get_config()
  config.data.data_dir = 'data/synth_vocab2'
  config.data.unknown_percentage = 100.0
  config.data.window_banks = ','.join(
      os.path.join(banks_dir, f'{bank}.npz') for bank in banks)
  config.data.window_fraction = fraction
  return config


def streams_bank(path: str, window_samples: int) -> None:
  """Positives and keyword-free windows of the 6 hours of training streams."""
  if os.path.exists(path):
    return
  banks = []
  for index, wav in enumerate(TRAIN_STREAMS):
    stream = streams_lib.Stream.from_wav(wav)
    banks.append(windows_lib.cut_windows(
        stream.audio, stream.events, window_samples,
        np.random.default_rng([600, index]),
        negatives=int(STREAM_NEGATIVES_PER_HOUR * stream.seconds / 3600)))
  bank = windows_lib.concatenate(banks)
  windows_lib.save_bank(path, bank)
  print(f'{path}: {bank.counts()}', flush=True)


def mined_bank(path: str, workdir: str) -> None:
  if os.path.exists(path):
    return
  config, model, params = load_run(workdir, 'best')
  labels = read_labels(workdir, model.label_count)
  point = selection.read_operating_point(workdir) or {}
  bank, false_accepts = mining.mine(
      model, params, labels, streams_lib.load_streams(MINING_STREAMS),
      threshold=MINING_THRESHOLD,
      window_samples=kws_config.clip_layout(config)['clip_samples'],
      smoothing_ms=point.get('smoothing_ms', DEFAULT_SMOOTHING_MS), progress=True)
  windows_lib.save_bank(path, bank)
  print(f'{path}: {false_accepts} false accepts at {MINING_THRESHOLD}, '
        f'{len(bank)} windows', flush=True)


def train(name: str, runs_dir: str, banks_dir: str) -> str:
  workdir = os.path.join(runs_dir, name)
  if os.path.exists(os.path.join(workdir, selection.OPERATING_POINT_FILE)):
    return workdir
  config = config_for(name, banks_dir)
  model = build_model(config)
  labels = ['_silence_', '_unknown_'] + config.data.wanted_words.split(',')
  selector = selection.StreamSelector(
      model, labels, streams_lib.load_streams(VALIDATION_STREAMS),
      target_fa_per_hour=TARGET_FA_PER_HOUR)
  train_and_evaluate(config, workdir, selector=selector)
  _, _, params = load_run(workdir, 'best')
  selection.write_operating_point(workdir, selector.operating_point(params))
  return workdir


def evaluate(name: str, workdir: str, streams) -> dict:
  path = os.path.join(workdir, 'stream_eval', 'streaming_eval.json')
  if os.path.exists(path):
    with open(path, encoding='utf-8') as file:
      return json.load(file)
  _, model, params = load_run(workdir, 'best')
  started = time.perf_counter()
  points = streams_lib.evaluate(model, params, read_labels(workdir, model.label_count), streams,
                                progress=True)
  seconds = time.perf_counter() - started
  out = os.path.dirname(path)
  os.makedirs(out, exist_ok=True)
  metrics.plot_det(points, os.path.join(out, 'det_curve.png'),
                   title=f'{name}: {points[0].hours:.1f} h of held-out streams')
  report = {
      'run': name, 'streams': [s.name for s in streams],
      'hours': points[0].hours, 'keywords': points[0].occurrences,
      'seconds': seconds,
      'frr_at_fa_per_hour': streams_lib.frr_at_budgets(points, BUDGETS),
      'operating_point': selection.read_operating_point(workdir),
      'points': [p.as_dict() for p in points],
  }
  with atomic_write(path, 'w') as file:
    json.dump(report, file, indent=2)
  return report


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', default='runs/negatives')
  parser.add_argument('--only', nargs='*',
                      default=list(BASELINES) + list(RUNS))
  args = parser.parse_args()
  cli.configure_xla_cpu()
  os.chdir(ROOT)
  banks_dir = os.path.join(args.runs, 'banks')
  os.makedirs(banks_dir, exist_ok=True)
  window_samples = kws_config.clip_layout(
      embedding_dnn.get_config())['clip_samples']
  eval_streams = None
  rows = []
  for name in args.only:
    if name in BASELINES:
      workdir = BASELINES[name]
    else:
      for bank in RUNS[name][0]:
        path = os.path.join(banks_dir, f'{bank}.npz')
        if bank == 'streams6h':
          streams_bank(path, window_samples)
        else:
          mined_bank(path, os.path.join(args.runs, MINED_BANKS[bank]))
      workdir = train(name, args.runs, banks_dir)
    if eval_streams is None:
      eval_streams = streams_lib.load_streams(EVALUATION_STREAMS)
    rows.append(evaluate(name, workdir, eval_streams))
  columns = BUDGETS + REFERENCE_BUDGETS
  print('\n| run | ' + ' | '.join(f'FRR at {b:g} FA/h' for b in columns) +
        ' | lowest FRR (at FA/h) | validation operating point |')
  print('|---|' + '---|' * (len(columns) + 2))
  for row in rows:
    points = [metrics.OperatingPoint(**{k: p[k] for k in (
        'threshold', 'detections', 'false_accepts', 'misses', 'occurrences',
        'hours')}) for p in row['points']]
    cells = []
    for budget in columns:
      best = metrics.frr_at(points, budget)
      cells.append('not reached' if best is None else
                   f'{best.frr:.1%} (thr {best.threshold:g})')
    floor = min(points, key=lambda p: (p.frr, p.fa_per_hour))
    cells.append(f'{floor.frr:.1%} ({floor.fa_per_hour:,.0f})')
    point = row['operating_point']
    cells.append('accuracy selection' if not point else
                 'not reached' if point['threshold'] is None else
                 f'thr {point["threshold"]:g}: FRR {point["frr"]:.1%} at '
                 f'{point["fa_per_hour"]:.2f} FA/h')
    print(f'| {row["run"]} | ' + ' | '.join(cells) + ' |')
  print(f'\n{rows[0]["hours"]:.2f} h of evaluation streams, '
        f'{rows[0]["keywords"]} keywords.')


if __name__ == '__main__':
  main()
