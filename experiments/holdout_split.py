"""Splits a synthetic dataset by speaker group, to train without a group and test on it.

    python experiments/holdout_split.py --data data/synth \\
        --accents en-us,en-us-nyc --out data/holdout_us

writes two Speech Commands-layout folders of symbolic links (no audio is
copied): ``<out>/train`` (every clip of the other speakers, and the
background noise) and ``<out>/heldout`` (every clip of the held-out
speakers). Train on the first with ``--config.data.data_dir=<out>/train``,
then measure the second with ``python -m kws_jax.heldout``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re

from kws_jax.data import synth
from kws_jax.data.speech_commands import BACKGROUND_NOISE_DIR


def split_by_accent(data_dir: str, accents: set[str], out_dir: str
                    ) -> dict[str, collections.Counter]:
  """Links the clips of ``data_dir`` into ``out_dir/{train,heldout}``.

  Returns per folder the number of clips per word.
  """
  speakers = synth.dataset_speakers(data_dir)
  unknown_accents = accents - {s.voice for s in speakers.values()}
  if unknown_accents:
    raise ValueError(f'accents {sorted(unknown_accents)} are not in {data_dir}'
                     f' (it has {sorted({s.voice for s in speakers.values()})})')
  counts = {'train': collections.Counter(), 'heldout': collections.Counter()}
  for path in sorted(glob.glob(os.path.join(data_dir, '*', '*.wav'))):
    word = os.path.basename(os.path.dirname(path))
    if word == BACKGROUND_NOISE_DIR:
      continue
    speaker = re.sub(r'_nohash_.*$', '', os.path.basename(path))
    folder = 'heldout' if speakers[speaker].voice in accents else 'train'
    _link(path, os.path.join(out_dir, folder, word, os.path.basename(path)))
    counts[folder][word] += 1
  for path in glob.glob(os.path.join(data_dir, BACKGROUND_NOISE_DIR, '*.wav')):
    _link(path, os.path.join(out_dir, 'train', BACKGROUND_NOISE_DIR,
                             os.path.basename(path)))
  return counts


def _link(target: str, link: str) -> None:
  os.makedirs(os.path.dirname(link), exist_ok=True)
  if os.path.lexists(link):
    os.unlink(link)
  os.symlink(os.path.abspath(target), link)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True)
  parser.add_argument('--accents', required=True,
                      help='comma-separated eSpeak voices to hold out')
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  counts = split_by_accent(args.data, set(args.accents.split(',')), args.out)
  for folder, words in counts.items():
    print(f'{args.out}/{folder}: {sum(words.values())} clips')


if __name__ == '__main__':
  main()
