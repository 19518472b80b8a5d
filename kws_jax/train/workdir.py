"""The files a training run writes next to its checkpoints.

kws_streaming's names: ``labels.txt``, ``flags.txt``, ``model_summary.txt``,
``accuracy_last.txt``; plus ``config.json`` (the full config, checked when a
run resumes), ``metrics.jsonl`` (one JSON object per logged step and split),
``accuracy_best.txt``, ``working_directory.txt`` (where the run was started,
so that its relative data paths resolve from anywhere) and TensorBoard event
files in ``logs/train`` and ``logs/validation``. Every file is replaced
atomically. A training holds ``.lock`` while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections

from kws_jax.atomic import atomic_write

# Fields that may change between the runs of one workdir: they do not change
# what is computed.
# The detector settings a run was selected for (kws_jax.wakeword writes it,
# export puts it into the manifest).
OPERATING_POINT_FILE = 'operating_point.json'
RESUMABLE_FIELDS = ('data.num_threads', 'train.log_every', 'train.max_to_keep')
# Fields added after runs were saved without them, with the values that
# compute what those runs computed: a run saved before the field existed
# resumes under a config that has it at one of these values.
# (data.device_augmentation 'auto' draws the augmentation on an accelerator:
# other draws than the host's, from the same distributions.)
ADDED_FIELDS = {'frontend.padding': ('valid',),
                'data.device_augmentation': ('off', 'auto'),
                'data.clips_on_device': ('off', 'auto', 'on'),
                'train.microbatches': (1,)}
WORKING_DIRECTORY_FILE = 'working_directory.txt'
LOCK_FILE = '.lock'


class WorkdirBusy(ValueError):
  """Another process is training in the workdir."""


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds ``workdir/.lock`` (an flock, freed when the process dies).

  Raises:
    WorkdirBusy: another process holds it; names its process id.
  """
  path = os.path.join(workdir, LOCK_FILE)
  with open(path, 'a+', encoding='utf-8') as file:
    try:
      fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      file.seek(0)
      holder = file.read().strip() or 'unknown'
      raise WorkdirBusy(
          f'{workdir} is in use by another training (process {holder}, lock '
          f'{path}); wait for it to end, or use another --workdir') from None
    file.seek(0)
    file.truncate()
    file.write(f'{os.getpid()}\n')
    file.flush()
    try:
      yield
    finally:
      fcntl.flock(file, fcntl.LOCK_UN)


def resolve_run_path(workdir: str, path: str) -> str:
  """A path from a run's config, as this process can open it.

  A relative path was relative to the directory the training started in
  (``working_directory.txt``); it is used as it is if it exists from here,
  else joined to that directory if it exists there, else returned as it is.
  """
  if not path or os.path.isabs(path) or os.path.exists(path):
    return path
  started_in = trained_from(workdir)
  if started_in and os.path.exists(os.path.join(started_in, path)):
    return os.path.join(started_in, path)
  return path


def trained_from(workdir: str) -> str | None:
  """The working directory the run's training started in, if recorded."""
  try:
    with open(os.path.join(workdir, WORKING_DIRECTORY_FILE),
              encoding='utf-8') as file:
      return file.read().strip() or None
  except OSError:
    return None


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
    if key not in old and new.get(key) in ADDED_FIELDS.get(key, ()):
      continue
    lines.append(f'{key}: workdir has {old.get(key, "(missing)")!r}, config '
                 f'has {new.get(key, "(missing)")!r}')
  return lines


def holds_checkpoints(workdir: str) -> bool:
  """Whether ``workdir/checkpoints`` holds a saved step."""
  checkpoints = os.path.join(workdir, 'checkpoints')
  return any(
      os.path.isdir(os.path.join(checkpoints, kind)) and
      any(name.isdigit() for name in os.listdir(os.path.join(checkpoints,
                                                             kind)))
      for kind in ('last', 'best'))


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Raises if ``workdir`` holds checkpoints of a different config.

  A workdir with checkpoints but no readable ``config.json`` is refused too:
  what trained them is unknown, and resuming could mix two models.

  Returns:
    True if ``workdir`` holds a run of another (or an unreadable) config that
    stopped before its first checkpoint: nothing can be lost, and the caller
    clears it and starts afresh. False otherwise.
  """
  path = os.path.join(workdir, 'config.json')
  checkpoints = holds_checkpoints(workdir)
  fresh_start = ('use another --workdir, or --overwrite to delete that run '
                 'and start fresh.')
  if not os.path.exists(path):
    if checkpoints:
      raise ValueError(
          f'{workdir} holds checkpoints ({os.path.join(workdir, "checkpoints")}'
          ') but no config.json, so what trained them is unknown; '
          + fresh_start)
    return False
  try:
    with open(path, encoding='utf-8') as file:
      saved = json.load(file)
  except (OSError, ValueError) as error:
    if not checkpoints:
      return True
    raise ValueError(f'{path} cannot be read ({error}); {fresh_start}'
                     ) from None
  differences = config_differences(saved, config_to_dict(config))
  if not differences:
    return False
  if not checkpoints:
    return True
  raise ValueError(
      f'{workdir} holds a run of a different config, so it cannot resume:\n'
      + '\n'.join(f'  {line}' for line in differences) +
      f'\n{fresh_start[0].upper()}{fresh_start[1:]}')


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
  write_text(os.path.join(workdir, WORKING_DIRECTORY_FILE), os.getcwd() + '\n')


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

  def flush(self) -> None:
    """Writes buffered points (at each checkpoint: a kill loses none before)."""
    for writer in self._writers.values():
      writer.flush()

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()
