"""The files a training run writes next to its checkpoints.

kws_streaming's names: ``labels.txt``, ``flags.txt``, ``model_summary.txt``,
``accuracy_last.txt``; plus ``config.json`` (the full config, checked when a
run resumes), ``metrics.jsonl`` (one JSON object per logged step and split),
``accuracy_best.txt`` and TensorBoard event files in ``logs/train`` and
``logs/validation``. Every file is replaced atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from kws_jax.atomic import atomic_write

# Fields that may change between the runs of one workdir: they do not change
# what is computed.
# The detector settings a run was selected for (kws_jax.wakeword writes it,
# export puts it into the manifest).
OPERATING_POINT_FILE = 'operating_point.json'
RESUMABLE_FIELDS = ('data.num_threads', 'train.log_every', 'train.max_to_keep')


def write_text(path: str, text: str) -> None:
  with atomic_write(path, 'w') as file:
    file.write(text)


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]
                       ) -> list[str]:
  """Lines ``field: workdir has X, config has Y`` for fields that differ."""
  old, new = _flatten(saved), _flatten(current)
  lines = []
  for key in sorted(set(old) | set(new)):
    if key in RESUMABLE_FIELDS or old.get(key) == new.get(key):
      continue
    lines.append(f'{key}: workdir has {old.get(key, "(missing)")!r}, config '
                 f'has {new.get(key, "(missing)")!r}')
  return lines


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises if ``workdir`` holds a run of a different config.

  A workdir with checkpoints but no readable ``config.json`` is refused too:
  what trained them is unknown, and resuming could mix two models.
  """
  path = os.path.join(workdir, 'config.json')
  checkpoints = os.path.join(workdir, 'checkpoints')
  holds_checkpoints = any(
      os.path.isdir(os.path.join(checkpoints, kind)) and
      any(name.isdigit() for name in os.listdir(os.path.join(checkpoints,
                                                             kind)))
      for kind in ('last', 'best'))
  if not os.path.exists(path):
    if holds_checkpoints:
      raise ValueError(
          f'{workdir} holds checkpoints ({checkpoints}) but no config.json, '
          'so what trained them is unknown; use another --workdir, or '
          '--overwrite to delete that run and start fresh.')
    return
  try:
    with open(path, encoding='utf-8') as file:
      saved = json.load(file)
  except (OSError, ValueError) as error:
    raise ValueError(
        f'{path} cannot be read ({error}); use another --workdir, or '
        '--overwrite to delete that run and start fresh.') from None
  differences = config_differences(saved, config_to_dict(config))
  if differences:
    raise ValueError(
        f'{workdir} holds a run of a different config, so it cannot resume:\n'
        + '\n'.join(f'  {line}' for line in differences) +
        '\nUse another --workdir, or --overwrite to delete that run and start '
        'fresh.')


def write_run_files(workdir: str, config: ml_collections.ConfigDict,
                    labels: list[str], summary: str) -> None:
  """config.json, flags.txt, labels.txt and model_summary.txt."""
  write_text(os.path.join(workdir, 'config.json'),
             json.dumps(config_to_dict(config), indent=2, sort_keys=True) + '\n')
  flat = _flatten(config_to_dict(config))
  write_text(os.path.join(workdir, 'flags.txt'),
             ''.join(f'{key} = {flat[key]!r}\n' for key in sorted(flat)))
  write_text(os.path.join(workdir, 'labels.txt'), '\n'.join(labels) + '\n')
  write_text(os.path.join(workdir, 'model_summary.txt'), summary)


class MetricsLog:
  """``metrics.jsonl``: rows ``{"step", "split", <metric>: value, ...}``.

  A resumed run first drops the rows logged after its checkpoint, and the
  ``test`` row (every run logs it once, at its end), so the file reads as
  one uninterrupted run however often the command ran.
  """

  def __init__(self, path: str, resume_step: int):
    self.path = path
    self.rows = []
    if os.path.exists(path):
      with open(path, encoding='utf-8') as file:
        for line in file:
          line = line.strip()
          if not line:
            continue
          try:
            row = json.loads(line)
          except json.JSONDecodeError:
            continue  # a line cut short by a crash
          if row.get('step', 0) <= resume_step and row.get('split') != 'test':
            self.rows.append(row)
    self._rewrite()

  def _rewrite(self) -> None:
    write_text(self.path, ''.join(json.dumps(r) + '\n' for r in self.rows))

  def append(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    row = {'step': step, 'split': split,
           **{k: float(v) for k, v in metrics.items()}}
    self.rows.append(row)
    with open(self.path, 'a', encoding='utf-8') as file:
      file.write(json.dumps(row) + '\n')


class TensorBoard:
  """Scalars for ``logs/train`` and ``logs/validation`` (tensorboardX)."""

  def __init__(self, workdir: str, resume_step: int):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writers = {
        split: SummaryWriter(os.path.join(workdir, 'logs', split),
                             purge_step=resume_step + 1 if resume_step else None,
                             flush_secs=30)
        for split in ('train', 'validation')
    }

  def scalars(self, split: str, step: int, metrics: Mapping[str, float]
              ) -> None:
    for name, value in metrics.items():
      self._writers[split].add_scalar(name, float(value), step)

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()
