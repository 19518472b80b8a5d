"""The run's checkpoints: the latest ones (to resume) and the best one.

Both are orbax ``CheckpointManager`` directories under ``workdir/checkpoints``:
``last/<step>`` keeps the ``max_to_keep`` most recent train states and
``best/<step>`` the one with the highest validation score (ties go to the
later step, as in kws_streaming): the validation accuracy, or what the
run's selection says (e.g. the FRR at a target false-accept rate). Orbax writes a checkpoint into a temporary
directory and renames it when complete, so a run killed while saving leaves
the previous checkpoints intact; a checkpoint that cannot be read back is
skipped with a warning in favour of the one before it, and set aside (moved
to ``checkpoints/unreadable/``, never deleted) when the run resumes from an
older one. If no checkpoint can be read, ``UnreadableCheckpoints`` is raised:
a run never starts again from step 0 over checkpoints it could not read, as
that would discard them.

Orbax stores no checksum, so a flipped bit in a weight file loads as a wrong
weight. Every save therefore records the SHA-256 of the state's values in the
step's own metadata (``custom_metadata`` of ``_CHECKPOINT_METADATA``, written
atomically with the step), and a restore whose values do not match it counts
as unreadable. Checkpoints saved before checksums existed restore unchecked.
Restores place arrays on the shardings of the target, or on this process's
first device when the target has none, so a run trained on several devices
loads in a process with one (and the other way round).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

State = dict[str, Any]


def _score(metrics: dict[str, float]) -> float:
  # Runs saved before scores were general stored 'validation_accuracy'.
  return float(metrics.get('score', metrics.get('validation_accuracy',
                                                -math.inf)))


class UnreadableCheckpoints(ValueError):
  """Checkpoints exist, but none of them can be read."""


_DIGEST_KEY = 'kws_jax_sha256'


def state_digest(state: State) -> str:
  """SHA-256 of a pytree's leaves: their dtypes, shapes and values, in order."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)  # replicated: each process has it all
    value = np.ascontiguousarray(jax.device_get(leaf))
    digest.update(f'{value.dtype.str}{value.shape};'.encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def _recorded_digest(step_dir: str) -> str | None:
  """The digest saved with a step; None for steps saved without one."""
  try:
    with open(os.path.join(step_dir, '_CHECKPOINT_METADATA'),
              encoding='utf-8') as file:
      custom = json.load(file).get('custom_metadata') or {}
  except (OSError, ValueError):
    return None  # orbax's own read reports what is wrong with the step
  return custom.get(_DIGEST_KEY)


def _restore_sharding(leaf: Any) -> jax.sharding.Sharding:
  sharding = getattr(leaf, 'sharding', None)
  return sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


class Checkpoints:
  """Saves and restores train states under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int):
    if max_to_keep < 1:
      raise ValueError(f'train.max_to_keep is {max_to_keep}, expected >= 1.')
    self.directory = os.path.abspath(directory)
    self._options = {
        'last': {'max_to_keep': max_to_keep},
        'best': {'max_to_keep': 1, 'best_fn': _score, 'best_mode': 'max'},
    }
    self._last = self._manager('last')
    self._best = self._manager('best')
    self.best_score = self._best_score()

  def _manager(self, name: str) -> ocp.CheckpointManager:
    directory = os.path.join(self.directory, name)
    try:
      return ocp.CheckpointManager(
          directory,
          options=ocp.CheckpointManagerOptions(
              create=True, enable_async_checkpointing=False,
              cleanup_tmp_directories=True, **self._options[name]))
    except Exception as error:  # pylint: disable=broad-exception-caught
      # E.g. a corrupt metrics file, which orbax reads when it opens.
      raise UnreadableCheckpoints(
          f'the checkpoints in {directory} cannot be opened '
          f'({type(error).__name__}: {error}); nothing was deleted. Restore '
          'them, use another --workdir, or --overwrite to start again.'
      ) from error

  def _best_score(self) -> float:
    step = self._best.latest_step()
    if step is None:
      return -math.inf
    return _score(self._best.metrics(step) or {})

  @property
  def best_step(self) -> int | None:
    return self._best.latest_step()

  @property
  def last_step(self) -> int | None:
    return self._last.latest_step()

  def save_last(self, state: State) -> None:
    """Saves ``state`` under its step, unless that step holds it already."""
    step = int(state['step'])
    digest = state_digest(state)
    if step in self._last.all_steps():
      if _recorded_digest(self._step_dir('last', step)) == digest:
        return  # e.g. the step a run resumed from
      self._last.delete(step)  # another state under this step: replace it
    self._last.save(step, args=ocp.args.StandardSave(state),
                    custom_metadata={_DIGEST_KEY: digest})

  def offer_best(self, state: State, score: float) -> bool:
    """Keeps ``state`` as the best if its score is at least the best's."""
    if score < self.best_score:
      return False
    step = int(state['step'])
    if step in self._best.all_steps():
      self._best.delete(step)
    self._best.save(step, args=ocp.args.StandardSave(state),
                    metrics={'score': float(score)},
                    custom_metadata={_DIGEST_KEY: state_digest(state)})
    self.best_score = float(score)
    return True

  def _step_dir(self, name: str, step: int) -> str:
    return os.path.join(self.directory, name, str(step))

  def discard_after(self, step: int) -> None:
    """Drops best checkpoints newer than ``step`` (the run resumes from it)."""
    for newer in [s for s in self._best.all_steps() if s > step]:
      self._best.delete(newer)
    self.best_score = self._best_score()

  def restore_last(self, target: State) -> State | None:
    """The newest readable state of ``last/``; None if ``last/`` is empty.

    Newer steps that cannot be read are moved to ``unreadable/`` (so that the
    resumed run saves those steps again) with a warning naming the new place.

    Raises:
      UnreadableCheckpoints: ``last/`` holds steps and none can be read.
    """
    state, unreadable = self._restore_newest('last', target)
    if state is not None and unreadable:
      for step in unreadable:
        self._set_aside('last', step)
      self._last.close()
      self._last = self._manager('last')
    return state

  def restore_best(self, target: State) -> State | None:
    """The best state, or None if no evaluation has saved one.

    Raises:
      UnreadableCheckpoints: the best checkpoint cannot be read.
    """
    return self._restore_newest('best', target)[0]

  def _restore_newest(self, name: str, target: State
                      ) -> tuple[State | None, list[int]]:
    """The newest readable state of ``name/`` and the newer unreadable steps."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=_restore_sharding(x)),
        target)
    manager = self._last if name == 'last' else self._best
    unreadable = []
    for step in sorted(manager.all_steps(), reverse=True):
      path = self._step_dir(name, step)
      # A fresh manager for every attempt: after one failed restore, an orbax
      # manager can fail to read every other step too.
      reader = self._manager(name)
      try:
        restored = reader.restore(step, args=ocp.args.StandardRestore(abstract))
        # Orbax returns plain tuples for optax's NamedTuples: restore the
        # target's exact tree structure.
        restored = jax.tree.unflatten(jax.tree.structure(target),
                                      jax.tree.leaves(restored))
        recorded = _recorded_digest(path)
        if recorded is not None and recorded != state_digest(restored):
          raise ValueError('its values do not match the checksum saved with '
                           'them (a damaged file)')
      except Exception as error:  # pylint: disable=broad-exception-caught
        warnings.warn(f'checkpoint {path} cannot be read ({type(error).__name__}'
                      f': {error}); trying the one before it.', stacklevel=3)
        unreadable.append(step)
        continue
      finally:
        reader.close()
      return restored, unreadable
    if unreadable:
      raise UnreadableCheckpoints(
          f'no checkpoint in {os.path.join(self.directory, name)} can be read '
          f'(steps {", ".join(map(str, sorted(unreadable)))}; see the warnings '
          'above); nothing was deleted. Restore them, use another --workdir, '
          'or --overwrite to start again.')
    return None, unreadable

  def _set_aside(self, name: str, step: int) -> str:
    """Moves the unreadable ``name/<step>`` to ``unreadable/``; returns where."""
    source = self._step_dir(name, step)
    target = os.path.join(self.directory, 'unreadable',
                          f'{name}_{step}_{time.strftime("%Y%m%d-%H%M%S")}')
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(source, target)
    warnings.warn(f'unreadable checkpoint {source} moved to {target}; the run '
                  f'resumes from an earlier step and saves step {step} again.',
                  stacklevel=3)
    return target

  def close(self) -> None:
    self._last.close()
    self._best.close()


def load_run(workdir: str, which: str = 'best'):
  """``(config, model, params)`` of a finished or running training run.

  Args:
    workdir: the run's directory (with ``config.json`` and ``checkpoints/``).
    which: 'best' (highest validation accuracy) or 'last'.

  Raises:
    FileNotFoundError: no run or no checkpoint in ``workdir``.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top

  from kws_jax.models import build_model  # pylint: disable=g-import-not-at-top
  from kws_jax.train import optim, steps  # pylint: disable=g-import-not-at-top
  from kws_jax.train import workdir as run_files  # pylint: disable=g-import-not-at-top

  if which not in ('best', 'last'):
    raise ValueError(f"which is {which!r}, expected 'best' or 'last'.")
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir} holds no training run (no '
                            'config.json); train one with python -m '
                            'kws_jax.train --workdir ...')
  try:
    with open(path, encoding='utf-8') as file:
      config = ml_collections.ConfigDict(json.load(file))
  except (OSError, ValueError) as error:
    raise ValueError(f'{path} cannot be read ({error}); the run needs its '
                     'config to rebuild the model.') from None
  # Relative paths were relative to where the training started.
  config.data.data_dir = run_files.resolve_run_path(workdir,
                                                    config.data.data_dir)
  model = build_model(config)
  optimizer = optim.make_optimizer(
      config.optimizer, optim.learning_rate_schedule(config.schedule))
  target = jax.eval_shape(
      lambda: steps.init_state(model, optimizer, config.train.seed))
  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'),
                            config.train.max_to_keep)
  try:
    state = (checkpoints.restore_best(target) if which == 'best' else
             checkpoints.restore_last(target))
  finally:
    checkpoints.close()
  if state is None:
    raise FileNotFoundError(f'{workdir} has no readable {which} checkpoint '
                            'yet.')
  return config, model, state['params']
