"""PNG pictures of a run: learning curves and the test confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from kws_jax.atomic import atomic_write


def _save(fig, path: str) -> None:
  with atomic_write(path, 'wb') as file:
    fig.savefig(file, format='png', dpi=110)
  plt.close(fig)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
  if len(values) < window or window < 2:
    return values
  kernel = np.ones(window) / window
  return np.convolve(values, kernel, mode='valid')


def plot_curves(rows: Sequence[Mapping[str, float]], path: str) -> None:
  """Training loss and accuracy, and validation accuracy, against the step."""
  train = [r for r in rows if r['split'] == 'train']
  validation = [r for r in rows if r['split'] == 'validation']
  fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
  if train:
    steps = np.array([r['step'] for r in train])
    window = max(1, len(train) // 50)
    loss = _smooth(np.array([r['loss'] for r in train]), window)
    acc = _smooth(np.array([r['accuracy'] for r in train]), window)
    loss_ax.plot(steps[len(steps) - len(loss):], loss, label='train')
    acc_ax.plot(steps[len(steps) - len(acc):], 100 * acc, label='train')
  if validation:
    acc_ax.plot([r['step'] for r in validation],
                [100 * r['accuracy'] for r in validation], 'o-',
                label='validation')
    loss_ax.plot([r['step'] for r in validation],
                 [r['loss'] for r in validation], 'o-', label='validation')
  loss_ax.set(xlabel='step', ylabel='cross entropy', yscale='log',
              title='Loss')
  acc_ax.set(xlabel='step', ylabel='accuracy (%)', title='Accuracy')
  for ax in (loss_ax, acc_ax):
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  _save(fig, path)


def plot_confusion(confusion: np.ndarray, labels: Sequence[str], path: str,
                   title: str) -> None:
  """Counts ``confusion[true, predicted]``, rows normalized for the colours."""
  fractions = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  size = max(5.0, 0.55 * len(labels) + 2)
  fig, ax = plt.subplots(figsize=(size, size))
  ax.imshow(fractions, cmap='Blues', vmin=0, vmax=1)
  ticks = np.arange(len(labels))
  ax.set_xticks(ticks, labels, rotation=60, ha='right')
  ax.set_yticks(ticks, labels)
  for i, j in np.ndindex(confusion.shape):
    if confusion[i, j]:
      ax.text(j, i, str(int(confusion[i, j])), ha='center', va='center',
              fontsize=7, color='white' if fractions[i, j] > 0.5 else 'black')
  ax.set(xlabel='predicted', ylabel='true', title=title)
  fig.tight_layout()
  _save(fig, path)
