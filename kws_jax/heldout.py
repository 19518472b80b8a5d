"""Accuracy of a trained run on another dataset: voices, engines or rooms it never heard.

    python -m kws_jax.heldout --workdir runs/cnn --data-dir data/kokoro \\
        [--name kokoro] [--which best]

evaluates the run's best weights on *every* clip of a Speech Commands-layout
directory (one split of all its speakers, with the run's silence and unknown
percentages), with the run's labels, clip layout and frontend, and writes ``<workdir>/heldout/<name>.json`` (accuracy
on all labels, on keywords alone, per label) and ``<name>_confusion.png``.
A model's figure on its own synthetic test split says how well it learned one
synthesizer; this is the figure that says whether it learned the words.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from kws_jax import config as kws_config
from kws_jax import data
from kws_jax.atomic import atomic_write
from kws_jax.data import speech_commands
from kws_jax.models import Model, wanted_words


@dataclasses.dataclass(frozen=True)
class HeldOutResult:
  """Predictions of a model on every clip of a dataset."""

  labels: tuple[str, ...]
  confusion: np.ndarray  # [true, predicted] counts

  @property
  def accuracy(self) -> float:
    return float(np.trace(self.confusion) / self.confusion.sum())

  @property
  def keyword_accuracy(self) -> float:
    """Accuracy on the clips of wanted words (labels after silence, unknown)."""
    keywords = self.confusion[speech_commands.UNKNOWN_INDEX + 1:]
    return float(np.trace(self.confusion[speech_commands.UNKNOWN_INDEX + 1:,
                                         speech_commands.UNKNOWN_INDEX + 1:])
                 / keywords.sum())

  def as_dict(self) -> dict[str, Any]:
    per_label = {label: {'clips': int(row.sum()),
                         'accuracy': float(row[i] / max(row.sum(), 1))}
                 for i, (label, row) in enumerate(zip(self.labels,
                                                      self.confusion))}
    return {'clips': int(self.confusion.sum()), 'accuracy': self.accuracy,
            'keyword_accuracy': self.keyword_accuracy, 'labels': per_label,
            'confusion': self.confusion.tolist()}


def load_heldout(config, data_dir: str) -> data.SpeechCommands:
  """``data_dir`` indexed with the run's words and silence/unknown shares.

  Every clip goes to one split (``training``; validation and testing are
  empty), so a set of a few speakers is measured whole.
  """
  cfg = config.data
  return data.load_speech_commands(
      data_dir, wanted_words=wanted_words(config),
      silence_percentage=cfg.silence_percentage,
      unknown_percentage=cfg.unknown_percentage,
      validation_percentage=0.0, testing_percentage=0.0, split_data=True,
      sample_rate=int(cfg.sample_rate))


def evaluate_heldout(model: Model, params: Any, config,
                     dataset: data.SpeechCommands, *, batch_size: int = 100,
                     progress: bool = True) -> HeldOutResult:
  """Non-streaming predictions on every clip of every non-empty split.

  Raises:
    ValueError: the dataset's labels differ from the model's.
  """
  if len(dataset.labels) != model.label_count:
    raise ValueError(
        f'{dataset.data_dir} has {len(dataset.labels)} labels '
        f'({", ".join(dataset.labels)}), the model {model.label_count}.')
  layout = kws_config.clip_layout(config)
  logits_fn = jax.jit(
      lambda p, audio: model.logits(p, model.inputs_from_audio(audio)))
  labels = len(dataset.labels)
  confusion = np.zeros((labels, labels), np.int64)
  splits = [s for s in speech_commands.SPLITS if dataset.split(s)]
  total = sum(data.num_eval_batches(dataset, s, batch_size) for s in splits)
  bar = tqdm(total=total, desc=f'held out {dataset.data_dir}',
             disable=not progress, unit='batch')
  with bar:
    for split in splits:
      for batch in data.eval_batches(dataset, split, batch_size, **layout):
        predicted = np.argmax(np.asarray(
            logits_fn(params, jnp.asarray(batch['audio']))), -1)
        real = batch['weight'] > 0
        np.add.at(confusion, (batch['label'][real], predicted[real]), 1)
        bar.update()
  return HeldOutResult(tuple(dataset.labels), confusion)


def write_report(result: HeldOutResult, run_dir: str, name: str,
                 title: str, **extra: Any) -> str:
  """Writes ``<run_dir>/heldout/<name>.json`` and ``<name>_confusion.png``.

  ``extra`` fields (where the data came from, ...) go into the JSON.
  Returns the JSON's path.
  """
  from kws_jax.train import plots  # pylint: disable=g-import-not-at-top
  out = os.path.join(run_dir, 'heldout')
  path = os.path.join(out, f'{name}.json')
  with atomic_write(path, 'w') as file:
    json.dump({**extra, **result.as_dict()}, file, indent=1)
  plots.plot_confusion(
      result.confusion, result.labels,
      os.path.join(out, f'{name}_confusion.png'),
      f'{title} on {name}: {result.accuracy:.2%} '
      f'({result.keyword_accuracy:.2%} on keywords)')
  return path


def kokoro_accuracy(workdir: str, heldout_dir: str, words: Sequence[str],
                    per_word: int, styles: Sequence[str] | None = None
                    ) -> HeldOutResult | None:
  """The run's accuracy on Kokoro-82M speech of `words`, made in heldout_dir.

  ``styles``: the voice styles its speakers blend (default: all five); a run
  that trained on Kokoro is checked on a style it never heard. Writes
  ``<workdir>/heldout/kokoro.json``. None (with a note) when `heldout_dir` is
  empty or the tts extra is not installed.
  """
  from kws_jax.train import load_run  # pylint: disable=g-import-not-at-top
  if not heldout_dir:
    return None
  from kws_jax.data import kokoro  # pylint: disable=g-import-not-at-top
  if not kokoro.installed():
    print(f'skipped: Kokoro is not installed ({kokoro.INSTALL_HINT})')
    return None
  kokoro.synthesize_dataset(heldout_dir, words=words, per_word=per_word,
                            seed=1, styles=styles or kokoro.STYLES)
  config, model, params = load_run(workdir)
  result = evaluate_heldout(model, params, config,
                            load_heldout(config, heldout_dir))
  write_report(result, workdir, 'kokoro', model.name, data_dir=heldout_dir,
               weights='best')
  return result


def main(argv: Sequence[str] | None = None) -> None:
  from kws_jax import cli  # pylint: disable=g-import-not-at-top
  cli.configure_xla_cpu()
  from kws_jax.train import load_run  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='python -m kws_jax.heldout',
      description='Accuracy of a trained run on every clip of another '
      'Speech Commands-layout dataset.')
  parser.add_argument('--workdir', required=True, help='the training run')
  parser.add_argument('--data-dir', required=True, help='the held-out data')
  parser.add_argument('--name', default=None,
                      help='result name (default: the data folder name)')
  parser.add_argument('--which', default='best', choices=('best', 'last'))
  parser.add_argument('--batch-size', type=int, default=100)
  args = parser.parse_args(argv)
  config, model, params = load_run(args.workdir, args.which)
  dataset = load_heldout(config, args.data_dir)
  result = evaluate_heldout(model, params, config, dataset,
                            batch_size=args.batch_size)
  name = args.name or os.path.basename(os.path.normpath(args.data_dir))
  path = write_report(result, args.workdir, name, model.name,
                      workdir=args.workdir, data_dir=args.data_dir,
                      weights=args.which)
  print(f'{name}: {result.accuracy:.2%} on {int(result.confusion.sum())} '
        f'clips, {result.keyword_accuracy:.2%} on keywords alone; {path}')


if __name__ == '__main__':
  main()
