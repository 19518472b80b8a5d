"""Real-world acoustics: what rooms, noise and channels in training buy.

    python experiments/acoustics.py [--runs runs/acoustics] [--only NAME ...]

Trains the speech-embedding dense head of experiments/negatives.py's
`streams` run again with `config.acoustics.enabled=1` (rooms from a bank of
300 simulated rooms, seed 0; the dataset's background noise at 0-20 dB SNR;
random microphones; telephone lines; gain and clipping), and measures both,
and the MFCC CNN baseline, on the same held-out audio twice: as synthesized,
and rendered through rooms, noise and microphones none of them trained on
(`python -m kws_jax.data.render_acoustics`: a bank of 100 rooms from seed 1,
noise kinds no training recipe mixes in: mains hum, music-like chords,
clatter, pink noise):

  clips    data/kokoro (Kokoro-82M voices, an engine absent from training;
           60 clips per word) and data/kokoro_room (the same clips rendered);
  streams  experiments/negatives.py's 4 hours of evaluation streams and
           data/streams/room_* (the same streams rendered, 30 s per room).

Every step is kept on disk and skipped when done. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import negatives, wakeword_checkpoints
from kws_jax import cli
from kws_jax import heldout
from kws_jax.atomic import atomic_write
from kws_jax.detect import metrics
from kws_jax.detect.runners import read_labels
from kws_jax.models import build_model
from kws_jax.train import load_run, train_and_evaluate
from kws_jax.wakeword import selection
from kws_jax.wakeword import streams as streams_lib

STREAMS = negatives.STREAMS
ROOM_STREAMS = [os.path.join(STREAMS, 'room_' + os.path.basename(path))
                for path in negatives.EVALUATION_STREAMS]
CLIP_SETS = {'kokoro': 'data/kokoro', 'kokoro_room': 'data/kokoro_room'}
STREAM_SETS = {'clean': negatives.EVALUATION_STREAMS, 'room': ROOM_STREAMS}
BUDGETS = (0.5, 1.0, 2.0, 10.0, 50.0)
# name -> workdir of runs trained elsewhere
TRAINED = {'streams': 'runs/negatives/streams',
           'cnn_synth': 'runs/generalization/cnn_synth'}
NEW_RUNS = ('streams_rooms',)


def train_with_rooms(runs_dir: str) -> str:
  workdir = os.path.join(runs_dir, 'streams_rooms')
  if os.path.exists(os.path.join(workdir, selection.OPERATING_POINT_FILE)):
    return workdir
  config = negatives.config_for('streams', 'runs/negatives/banks')
  config.acoustics.enabled = 1
  model = build_model(config)
  labels = ['_silence_', '_unknown_'] + config.data.wanted_words.split(',')
  selector = selection.StreamSelector(
      model, labels, streams_lib.load_streams(negatives.VALIDATION_STREAMS),
      target_fa_per_hour=negatives.TARGET_FA_PER_HOUR)
  train_and_evaluate(config, workdir, selector=selector)
  _, _, params = load_run(workdir, 'best')
  selection.write_operating_point(workdir, selector.operating_point(params))
  return workdir


def clip_accuracy(workdir: str, name: str) -> dict:
  path = os.path.join(workdir, 'heldout', f'{name}.json')
  if not os.path.exists(path):
    config, model, params = load_run(workdir, 'best')
    dataset = heldout.load_heldout(config, CLIP_SETS[name])
    result = heldout.evaluate_heldout(model, params, config, dataset)
    heldout.write_report(result, workdir, name, os.path.basename(workdir),
                         data_dir=CLIP_SETS[name])
  with open(path, encoding='utf-8') as file:
    return json.load(file)


def stream_frr(workdir: str, name: str, streams) -> dict:
  path = os.path.join(workdir, 'stream_eval', f'acoustics_{name}.json')
  if os.path.exists(path):
    with open(path, encoding='utf-8') as file:
      return json.load(file)
  _, model, params = load_run(workdir, 'best')
  points = streams_lib.evaluate(model, params,
                                read_labels(workdir, model.label_count),
                                streams(), progress=True)
  out = os.path.dirname(path)
  os.makedirs(out, exist_ok=True)
  metrics.plot_det(points, os.path.join(out, f'acoustics_{name}_det.png'),
                   title=f'{os.path.basename(workdir)}: {points[0].hours:.1f} '
                   f'h of held-out streams ({name})')
  report = {'hours': points[0].hours, 'keywords': points[0].occurrences,
            'points': [p.as_dict() for p in points]}
  with atomic_write(path, 'w') as file:
    json.dump(report, file, indent=2)
  return report


def frr_cells(report: dict) -> list[str]:
  points = [metrics.OperatingPoint.from_dict(p) for p in report['points']]
  return wakeword_checkpoints.frr_cells(points, BUDGETS)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', default='runs/acoustics')
  parser.add_argument('--only', nargs='*', default=['cnn_synth', 'streams',
                                                    *NEW_RUNS])
  args = parser.parse_args()
  cli.configure_xla_cpu()
  os.chdir(ROOT)
  loaded = {}

  def streams_of(kind):
    return lambda: loaded.setdefault(
        kind, streams_lib.load_streams(STREAM_SETS[kind]))

  rows = []
  for name in args.only:
    workdir = (TRAINED[name] if name in TRAINED else
               train_with_rooms(args.runs))
    clips = {s: clip_accuracy(workdir, s) for s in CLIP_SETS}
    frr = {s: stream_frr(workdir, s, streams_of(s)) for s in STREAM_SETS}
    rows.append((name, clips, frr))
  print('\n| run | Kokoro clips (keywords) | in rooms (keywords) | ' +
        ' | '.join(f'FRR at {b:g} FA/h, clean / rooms' for b in BUDGETS) + ' |')
  print('|---|---|---|' + '---|' * len(BUDGETS))
  for name, clips, frr in rows:
    cells = [f'{clips[s]["accuracy"]:.1%} ({clips[s]["keyword_accuracy"]:.1%})'
             for s in CLIP_SETS]
    cells += [f'{a} / {b}' for a, b in zip(frr_cells(frr['clean']),
                                           frr_cells(frr['room']))]
    print(f'| {name} | ' + ' | '.join(cells) + ' |')
  first = rows[0][2]
  print(f'\n{first["clean"]["hours"]:.2f} h of evaluation streams, '
        f'{first["clean"]["keywords"]} keywords.')


if __name__ == '__main__':
  main()
