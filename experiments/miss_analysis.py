"""Which keywords a detector misses, and what it fires on instead.

    python experiments/miss_analysis.py --workdir runs/acoustics/streams_rooms \\
        [--streams data/streams/eval_30min_seed7.wav ...] \\
        [--negatives data/streams/neg_eval_180min_seed200.wav]

Streams the run's best weights over keyword streams and keyword-free
streams (batched, as kws_jax.wakeword.streams does) and prints

  - the thresholds at which the keyword-free audio gives 10 and 100 FA/h,
    and which keywords those false accepts are;
  - recall of the keywords said alone and inside sentences (from the
    stream's transcript, where it has one);
  - per keyword said alone: its local SNR (the energy of its span over the
    500 ms before it, a stand-in for the speech-to-background ratio) and
    the peak smoothed posterior of its label within 1 s after it starts;
    recall at both thresholds by SNR band and by keyword, and what the
    model said instead where it missed (the label of the highest smoothed
    posterior over the span, silence excluded).

Writes <workdir>/stream_eval/miss_analysis.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from kws_jax import cli
from kws_jax.atomic import atomic_write
from kws_jax.detect import detector as detector_lib
from kws_jax.data import synth_stream
from kws_jax.detect import metrics
from kws_jax.detect.runners import read_labels
from kws_jax.train import load_run
from kws_jax.wakeword import selection
from kws_jax.wakeword import streams as streams_lib

STREAMS = ['data/streams/eval_30min_seed7.wav',
           'data/streams/eval_sent_30min_seed500.wav']
NEGATIVES = ['data/streams/neg_eval_180min_seed200.wav']
BUDGETS = (10.0, 100.0)
SNR_BANDS = (-np.inf, 0.0, 5.0, 10.0, 20.0, np.inf)
RATE = 16000


def local_snr_db(audio: np.ndarray, start_s: float, end_s: float) -> float:
  span = audio[int(start_s * RATE):int(end_s * RATE)].astype(np.float64)
  before = audio[max(0, int((start_s - 0.6) * RATE)):
                 max(0, int((start_s - 0.1) * RATE))].astype(np.float64)
  signal, background = np.mean(span**2), np.mean(before**2) if len(
      before) else 1e-12
  return float(10 * np.log10(max(signal - background, 1e-12) /
                             max(background, 1e-12)))


def transcript_rows(wav: str) -> list[tuple[str, float, float]]:
  """The stream's transcript; [] for streams made before transcripts."""
  path = synth_stream.transcript_path(os.path.splitext(wav)[0] + '.csv')
  return synth_stream.read_transcript(path) if os.path.exists(path) else []


def spoken_before(wav: str, times_s: list[float]) -> list[str]:
  """What the stream's transcript says in the 1.5 s before each time."""
  rows = transcript_rows(wav)
  if not rows:
    return []
  texts = []
  for time_s in times_s:
    near = [text for text, start, end in rows
            if start < time_s and end > time_s - 1.5]
    texts.append(' | '.join(near) or '(no foreground speech: noise or the '
                 'distant talker)')
  return texts


def threshold_at(points, budget: float) -> float:
  """The lowest threshold whose FA/h on keyword-free audio is <= budget."""
  within = [p for p in points if p.fa_per_hour <= budget]
  return min(p.threshold for p in within) if within else 1.0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--streams', nargs='+', default=STREAMS)
  parser.add_argument('--negatives', nargs='+', default=NEGATIVES)
  args = parser.parse_args()
  cli.configure_xla_cpu()
  os.chdir(ROOT)
  _, model, params = load_run(args.workdir, 'best')
  labels = read_labels(args.workdir, model.label_count)
  point = selection.read_operating_point(args.workdir) or {}
  smoothing = point.get('smoothing_ms', detector_lib.DEFAULT_SMOOTHING_MS)
  refractory = point.get('refractory_ms', detector_lib.DEFAULT_REFRACTORY_MS)

  negatives = streams_lib.stream_posteriors(
      model, params, streams_lib.load_streams(args.negatives),
      smoothing_ms=smoothing, progress=True)
  points = streams_lib.sweep(negatives, labels, refractory_ms=refractory)
  thresholds = {budget: threshold_at(points, budget) for budget in BUDGETS}
  fired, said = {}, {}
  for budget, threshold in thresholds.items():
    counts, texts = collections.Counter(), []
    for item, path in zip(negatives, args.negatives):
      detections = metrics.detections_at(item.smoothed, labels, item.block_s,
                                         threshold, refractory)
      counts.update(d.word for d in detections)
      texts += spoken_before(path, [d.time_s for d in detections])
    fired[budget] = dict(counts.most_common())
    said[budget] = texts

  keyword_streams = streams_lib.stream_posteriors(
      model, params, streams_lib.load_streams(args.streams),
      smoothing_ms=smoothing, progress=True)
  rows = []
  for item, path in zip(keyword_streams, args.streams):
    transcript = transcript_rows(path)
    for event in item.stream.events:
      if event.word not in labels:
        continue
      first = int(event.start_s / item.block_s)
      last = min(len(item.smoothed), int((event.start_s + 1.0) / item.block_s)
                 + 1)
      window = item.smoothed[first:last]
      column = labels.index(event.word)
      best_other = window[:, 1:].max(axis=0)  # silence excluded
      row = next((text for text, start, end in transcript
                  if start <= event.start_s < end), None)
      rows.append({
          'word': event.word,
          'stream': item.stream.name,
          # None: no transcript to tell.
          'in_sentence': None if row is None else (
              len(row.split()) > len(event.word.split())),
          'snr_db': local_snr_db(item.stream.audio, event.start_s,
                                 event.end_s),
          'peak': float(window[:, column].max()),
          'instead': labels[1 + int(np.argmax(best_other))],
      })

  print(f'\n{args.workdir}: {points[0].hours:.2f} h keyword-free, '
        f'{len(rows)} keywords')
  for budget, threshold in thresholds.items():
    print(f'threshold for {budget:g} FA/h: {threshold:g}; false accepts by '
          f'keyword: {fired[budget]}')
  if said[BUDGETS[0]]:
    print(f'said in the 1.5 s before each false accept at {BUDGETS[0]:g} '
          'FA/h: ' + '; '.join(repr(t) for t in said[BUDGETS[0]]))
  print('\n| keywords | count | ' + ' | '.join(
      f'recall at {b:g} FA/h' for b in BUDGETS) + ' |')
  print('|---|---:|' + '---:|' * len(BUDGETS))
  contexts = {}
  for name, test in (('said alone', lambda r: r['in_sentence'] is False),
                     ('inside a sentence', lambda r: r['in_sentence']),
                     ('no transcript', lambda r: r['in_sentence'] is None)):
    mine = [r for r in rows if test(r)]
    if not mine:
      continue
    recall = {b: float(np.mean([r['peak'] >= t for r in mine]))
              for b, t in thresholds.items()}
    contexts[name] = {'keywords': len(mine), 'recall': recall}
    print(f'| {name} | {len(mine)} | ' + ' | '.join(
        f'{recall[b]:.0%}' for b in BUDGETS) + ' |')
  # Local SNR means something only for a keyword said alone: inside a
  # sentence, the 500 ms before it hold speech.
  alone = [r for r in rows if r['in_sentence'] is False]
  print(f'\nkeywords said alone ({len(alone)}), by local SNR:')
  print('\n| local SNR | keywords | median peak posterior | ' + ' | '.join(
      f'recall at {b:g} FA/h' for b in BUDGETS) + ' |')
  print('|---|---:|---:|' + '---:|' * len(BUDGETS))
  snr = np.array([r['snr_db'] for r in alone])
  peak = np.array([r['peak'] for r in alone])
  bands = []
  for low, high in zip(SNR_BANDS[:-1], SNR_BANDS[1:]):
    inside = (snr >= low) & (snr < high)
    if not inside.any():
      continue
    recall = {b: float(np.mean(peak[inside] >= t))
              for b, t in thresholds.items()}
    name = (f'< {high:g} dB' if low == -np.inf else
            f'>= {low:g} dB' if high == np.inf else f'{low:g}-{high:g} dB')
    bands.append({'band': name, 'keywords': int(inside.sum()),
                  'median_peak': float(np.median(peak[inside])),
                  'recall': recall})
    print(f'| {name} | {inside.sum()} | {np.median(peak[inside]):.2f} | ' +
          ' | '.join(f'{recall[b]:.0%}' for b in BUDGETS) + ' |')
  print('\n| keyword | keywords | ' + ' | '.join(
      f'recall at {b:g} FA/h' for b in BUDGETS) + ' | missed at 100 FA/h: '
        'said instead |')
  print('|---|---:|' + '---:|' * len(BUDGETS) + '---|')
  words = {}
  for word in sorted({r['word'] for r in rows}):
    mine = [r for r in rows if r['word'] == word]
    recall = {b: float(np.mean([r['peak'] >= t for r in mine]))
              for b, t in thresholds.items()}
    instead = collections.Counter(
        r['instead'] for r in mine if r['peak'] < thresholds[BUDGETS[-1]])
    words[word] = {'keywords': len(mine), 'recall': recall,
                   'instead': dict(instead.most_common())}
    print(f'| {word} | {len(mine)} | ' + ' | '.join(
        f'{recall[b]:.0%}' for b in BUDGETS) + ' | ' + ', '.join(
            f'{k} {v}' for k, v in instead.most_common(3)) + ' |')
  out = os.path.join(args.workdir, 'stream_eval', 'miss_analysis.json')
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with atomic_write(out, 'w') as file:
    json.dump({'thresholds': {f'{b:g}': t for b, t in thresholds.items()},
               'contexts': contexts,
               'false_accepts_said': {f'{b:g}': t for b, t in said.items()},
               'false_accepts_by_keyword': {f'{b:g}': c
                                            for b, c in fired.items()},
               'snr_bands': bands, 'keywords': words, 'occurrences': rows},
              file, indent=1)


if __name__ == '__main__':
  main()
