"""The run's checkpoints: the latest ones (to resume) and the best one.

Both are orbax ``CheckpointManager`` directories under ``workdir/checkpoints``:
``last/<step>`` keeps the ``max_to_keep`` most recent train states and
``best/<step>`` the one with the highest validation accuracy (ties go to the
later step, as in kws_streaming). Orbax writes a checkpoint into a temporary
directory and renames it when complete, so a run killed while saving leaves
the previous checkpoints intact; a checkpoint that cannot be read back is
skipped with a warning in favour of the one before it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

State = dict[str, Any]


class Checkpoints:
  """Saves and restores train states under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int):
    if max_to_keep < 1:
      raise ValueError(f'train.max_to_keep is {max_to_keep}, expected >= 1.')
    self.directory = os.path.abspath(directory)

    def manager(name, **options):
      return ocp.CheckpointManager(
          os.path.join(self.directory, name),
          options=ocp.CheckpointManagerOptions(
              create=True, enable_async_checkpointing=False,
              cleanup_tmp_directories=True, **options))

    self._last = manager('last', max_to_keep=max_to_keep)
    self._best = manager('best', max_to_keep=1,
                         best_fn=lambda m: m['validation_accuracy'],
                         best_mode='max')
    self.best_accuracy = self._best_accuracy()

  def _best_accuracy(self) -> float:
    step = self._best.latest_step()
    if step is None:
      return -1.0
    metrics = self._best.metrics(step) or {}
    return float(metrics.get('validation_accuracy', -1.0))

  @property
  def best_step(self) -> int | None:
    return self._best.latest_step()

  @property
  def last_step(self) -> int | None:
    return self._last.latest_step()

  def save_last(self, state: State) -> None:
    step = int(state['step'])
    if step not in self._last.all_steps():
      self._last.save(step, args=ocp.args.StandardSave(state))

  def offer_best(self, state: State, validation_accuracy: float) -> bool:
    """Keeps ``state`` as the best if its accuracy is at least the best's."""
    if validation_accuracy < self.best_accuracy:
      return False
    step = int(state['step'])
    if step in self._best.all_steps():
      self._best.delete(step)
    self._best.save(step, args=ocp.args.StandardSave(state),
                    metrics={'validation_accuracy': float(validation_accuracy)})
    self.best_accuracy = float(validation_accuracy)
    return True

  def discard_after(self, step: int) -> None:
    """Drops best checkpoints newer than ``step`` (the run resumes from it)."""
    for newer in [s for s in self._best.all_steps() if s > step]:
      self._best.delete(newer)
    self.best_accuracy = self._best_accuracy()

  def restore_last(self, target: State) -> State | None:
    """The newest readable state of ``last/``, or None if there is none."""
    return self._restore_newest(self._last, target)

  def restore_best(self, target: State) -> State | None:
    """The best state, or None if no evaluation has saved one."""
    return self._restore_newest(self._best, target)

  def _restore_newest(self, manager: ocp.CheckpointManager,
                      target: State) -> State | None:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    for step in sorted(manager.all_steps(), reverse=True):
      path = os.path.join(str(manager.directory), str(step))
      try:
        restored = manager.restore(step,
                                   args=ocp.args.StandardRestore(abstract))
      except Exception as error:  # pylint: disable=broad-exception-caught
        warnings.warn(f'checkpoint {path} cannot be read ({type(error).__name__}'
                      f': {error}); trying the one before it.', stacklevel=2)
        continue
      # Orbax returns plain tuples for optax's NamedTuples: restore the
      # target's exact tree structure.
      return jax.tree.unflatten(jax.tree.structure(target),
                                jax.tree.leaves(restored))
    return None

  def close(self) -> None:
    self._last.close()
    self._best.close()
