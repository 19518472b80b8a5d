"""FRR at FA/h of wake-word runs' best and last weights on their held-out streams.

    python experiments/wakeword_checkpoints.py runs/heyjax runs/heyjax_kokoro

For each run made by ``python -m kws_jax.wakeword``, both kept checkpoints
(``best``, chosen on the validation streams, and ``last``) are streamed over
the run's evaluation streams, clean and in unseen rooms, with the run's
smoothing. Results are cached in ``<run>/stream_eval/checkpoint_*.json``; the
script prints one markdown table. It tells whether the selection kept the
better weights, which a run's own report (best weights only) cannot.
"""

from __future__ import annotations

import argparse
import json
import os

from kws_jax import cli
from kws_jax.atomic import write_json

BUDGETS = (1.0, 2.0, 5.0, 10.0, 100.0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def evaluate(run: str, which: str, name: str, paths: list[str]) -> list:
  """The operating points of one checkpoint on one stream set (cached)."""
  # pylint: disable=g-import-not-at-top
  from kws_jax.detect import metrics
  from kws_jax.detect.runners import read_labels
  from kws_jax.train import load_run
  from kws_jax.wakeword import recipe as recipe_lib, selection
  # pylint: enable=g-import-not-at-top
  path = os.path.join(run, 'stream_eval', f'checkpoint_{which}_{name}.json')
  if not os.path.exists(path):
    _, model, params = load_run(run, which)
    point = selection.read_operating_point(run)
    report = recipe_lib.evaluate_streams(
        model, params, read_labels(run, model.label_count), paths,
        os.path.join(run, 'stream_eval', f'checkpoint_{which}_{name}.png'),
        f'{os.path.basename(run)} ({which}): {name}',
        smoothing_ms=point['smoothing_ms'])
    write_json(path, report)
  with open(path, encoding='utf-8') as file:
    return [metrics.OperatingPoint.from_dict(p)
            for p in json.load(file)['points']]


def evaluation_sets(run: str) -> dict[str, list[str]]:
  """The held-out streams of a wake-word run: clean and in unseen rooms."""
  from kws_jax.wakeword import recipe as recipe_lib  # pylint: disable=g-import-not-at-top
  layout = recipe_lib.Layout(run)
  return {'clean': [layout.stream('evaluation'),
                    layout.stream('evaluation_negative')],
          'rooms': [layout.stream('evaluation_rooms'),
                    layout.stream('evaluation_negative_rooms')]}


def frr_cells(points: list, budgets=BUDGETS) -> list[str]:
  """FRR at each budget as table cells ('–' where no threshold reaches it)."""
  from kws_jax.detect import metrics  # pylint: disable=g-import-not-at-top
  cells = []
  for budget in budgets:
    best = metrics.frr_at(points, budget)
    cells.append('–' if best is None else f'{best.frr:.1%}')
  return cells


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('runs', nargs='+', help='wake-word workdirs')
  args = parser.parse_args()
  cli.configure_xla_cpu()
  print('\n| run | weights | streams | ' + ' | '.join(
      f'FRR at {b:g} FA/h' for b in BUDGETS) + ' |')
  print('|---|---|---|' + '---:|' * len(BUDGETS))
  for run in args.runs:
    for which in ('best', 'last'):
      for name, paths in evaluation_sets(run).items():
        cells = frr_cells(evaluate(run, which, name, paths))
        print(f'| {os.path.basename(os.path.normpath(run))} | {which} | '
              f'{name} | ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
  main()
