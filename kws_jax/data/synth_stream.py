"""A long synthetic stream with keywords at known times, for streaming tests.

    python -m kws_jax.data.synth_stream --out stream.wav --minutes 10 --seed 0
    python -m kws_jax.data.synth_stream --out negatives.wav --minutes 60 \
        --keyword-probability 0 --vocabulary 5000   # keyword-free

writes stream.wav (16 kHz mono) and stream.csv with one row per keyword:

    word,start_s,end_s
    left,3.21000,3.64000

start_s and end_s are the boundaries of the trimmed word as placed in the
stream, to within a sample (5 decimals). The stream is:
  - a noise bed: white, pink or brown noise, changing every 15-45 s, at an RMS
    level drawn per segment from [0.003, 0.03] and interpolated between them;
  - a distant talker saying filler sentences under it, at 0.3-1x the bed level;
  - foreground events 1-3 s apart, never overlapping: a keyword (probability
    0.5), an auxiliary word such as "tree" or "wow" (0.3) or a short filler
    sentence (0.2), each by a new random speaker at a peak level in
    [0.05, 0.8], so the signal-to-noise ratio varies by ~40 dB.
`StreamContent` changes what the events say: how often a keyword comes,
keywords inside sentences, and a large vocabulary of distractor words
(kws_jax.data.vocabulary), or no keyword at all.
The stream is a pure function of (minutes, seed, words, content).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
import tqdm

from kws_jax import atomic
from kws_jax.data import audio
from kws_jax.data import noise
from kws_jax.data import speech_commands
from kws_jax.data import synth


@dataclasses.dataclass(frozen=True)
class KeywordEvent:
  """A keyword in the stream, in seconds from its start."""

  word: str
  start_s: float
  end_s: float


def noise_bed(
    num_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Segments of colored noise at varying levels.

  Returns:
    (bed float32 [num_samples], level float32 [num_samples]): the noise and its
    RMS level envelope (to scale other background sources with).
  """
  bed = np.zeros(num_samples, np.float32)
  centers, levels = [], []
  start = 0
  while start < num_samples:
    end = min(num_samples, start + int(rng.uniform(15, 45) * audio.SAMPLE_RATE))
    bed[start:end] = noise.colored_noise(
        str(rng.choice(noise.COLORS)), end - start, rng
    )
    centers.append((start + end) / 2)
    levels.append(np.exp(rng.uniform(np.log(0.003), np.log(0.03))))
    start = end
  level = np.interp(np.arange(num_samples), centers, levels).astype(np.float32)
  return bed * level, level


@dataclasses.dataclass(frozen=True)
class StreamContent:
  """What the foreground events of a stream say.

  Attributes:
    keyword_probability: chance that an event is a keyword; the others are
      a distractor word (3 in 5) or a sentence (2 in 5).
    in_sentence_probability: chance that a keyword is said inside a short
      sentence ("then yes we will"), its pieces spoken one after another by
      the same speaker, 50-150 ms apart, rather than alone.
    distractors: words said alone (default: synth.AUXILIARY_WORDS that are
      not keywords).
    sentence_words: what sentences are made of (default: synth.FILLER_WORDS).
  """

  keyword_probability: float = 0.5
  in_sentence_probability: float = 0.0
  distractors: tuple[str, ...] | None = None
  sentence_words: tuple[str, ...] = synth.FILLER_WORDS

  def __post_init__(self):
    for name in ('keyword_probability', 'in_sentence_probability'):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f'{name}={value}, expected a probability in [0, 1]')
    if self.distractors is not None and not self.distractors:
      raise ValueError('distractors is empty; pass None for the default')
    if not self.sentence_words:
      raise ValueError('sentence_words is empty')


def _random_utterance(
    rng: np.random.Generator,
    words: Sequence[str],
    distractors: Sequence[str],
    content: StreamContent,
) -> tuple[str | None, list[str]]:
  """(keyword or None, pieces of text to speak in turn).

  With the default content: a keyword (probability 0.5), an auxiliary word
  (0.3) or a short filler sentence (0.2), each one piece.
  """
  kind = rng.uniform()
  keyword = content.keyword_probability
  if kind < keyword:
    word = str(rng.choice(words))
    punctuation = synth.PUNCTUATION[rng.integers(len(synth.PUNCTUATION))]
    if content.in_sentence_probability and (
        rng.uniform() < content.in_sentence_probability):
      before = synth.random_sentence(rng, content.sentence_words, (1, 4))
      after = synth.random_sentence(rng, content.sentence_words, (1, 4))
      return word, [before[:-1], word, after]
    return word, [word + punctuation]
  if kind < keyword + (1 - keyword) * 0.6:
    return None, [str(rng.choice(distractors))]
  return None, [synth.random_sentence(rng, content.sentence_words, (2, 6))]


def synthesize_stream(
    out_wav: str | os.PathLike,
    minutes: float,
    *,
    seed: int = 0,
    words: Sequence[str] = speech_commands.DEFAULT_WANTED_WORDS,
    labels_csv: str | os.PathLike | None = None,
    content: StreamContent = StreamContent(),
    progress: bool = True,
) -> list[KeywordEvent]:
  """Writes the stream WAV and its ground-truth CSV (default: out_wav, .csv).

  Beside the CSV, `transcript_path(labels_csv)` lists every foreground
  utterance (keywords, distractors and sentences) with its span.

  `content` says what the foreground events say; with keyword_probability
  0 the stream is keyword-free (negatives for false-accept counts and
  hard-negative mining) and its CSV has a header only.

  Returns:
    The keyword events, in time order, as written to the CSV.
  """
  if minutes <= 0:
    raise ValueError(f'minutes={minutes}, expected > 0')
  if content.keyword_probability > 0 and not words:
    raise ValueError('no keywords, but keyword_probability='
                     f'{content.keyword_probability}')
  for name in ('distractors', 'sentence_words'):
    spoken = set(getattr(content, name) or ()) & set(words)
    if spoken:
      raise ValueError(
          f'content.{name} holds keywords ({", ".join(sorted(spoken))}): '
          'they would be said without a ground-truth row')
  out_wav = os.fspath(out_wav)
  if labels_csv is None:
    labels_csv = os.path.splitext(out_wav)[0] + '.csv'
  rate = audio.SAMPLE_RATE
  num_samples = int(round(minutes * 60 * rate))
  rng = np.random.default_rng([seed, 5])
  stream, level = noise_bed(num_samples, rng)
  talker = synth.speech_track(num_samples, rng)
  talker_rms = max(float(np.sqrt(np.mean(talker**2))), 1e-6)
  stream += talker * level * np.float32(rng.uniform(0.3, 1.0) / talker_rms)

  distractors = content.distractors or tuple(
      word for word in synth.AUXILIARY_WORDS if word not in words)
  events, transcript = [], []
  position = int(rng.uniform(0.5, 2.0) * rate)
  with tqdm.tqdm(
      total=num_samples // rate,
      desc=f'synthesizing {out_wav}',
      unit='s',
      disable=not progress,
  ) as bar:
    while True:
      speaker = synth.random_speaker(rng)
      word, pieces = _random_utterance(rng, words, distractors, content)
      parts, keyword_span = [], None
      for text in pieces:
        speech = synth.speak_trimmed(
            text,
            speaker,
            rate=speaker.rate,
            pitch=speaker.pitch,
            seed=int(rng.integers(2**31)),
            max_samples=int(0.95 * audio.CLIP_SAMPLES)
            if text.rstrip(''.join(synth.PUNCTUATION)) == word else None,
        )
        if parts:  # A pause between the pieces of a sentence.
          parts.append(np.zeros(int(rng.uniform(0.05, 0.15) * rate),
                                np.float32))
        offset = sum(len(part) for part in parts)
        if keyword_span is None and text.rstrip(
            ''.join(synth.PUNCTUATION)) == word:
          keyword_span = (offset, offset + len(speech))
        parts.append(speech)
      speech = np.concatenate(parts)
      peak = np.exp(rng.uniform(np.log(0.05), np.log(0.8)))
      end = position + len(speech)
      if end > num_samples or len(speech) == 0:
        break
      stream[position:end] += speech * np.float32(peak / np.abs(speech).max())
      if word is not None:
        events.append(KeywordEvent(word, (position + keyword_span[0]) / rate,
                                   (position + keyword_span[1]) / rate))
      transcript.append((' '.join(pieces), position / rate, end / rate))
      position = end + int(rng.uniform(1.0, 3.0) * rate)
      bar.update(min(position, num_samples) // rate - bar.n)

  audio.write_wav(out_wav, np.clip(stream, -1.0, 1.0))
  with atomic.atomic_write(labels_csv, 'w') as file:
    writer = csv.writer(file, lineterminator='\n')
    writer.writerow(['word', 'start_s', 'end_s'])
    for event in events:
      writer.writerow([event.word, f'{event.start_s:.5f}', f'{event.end_s:.5f}'])
  with atomic.atomic_write(transcript_path(labels_csv), 'w') as file:
    writer = csv.writer(file, lineterminator='\n')
    writer.writerow(['text', 'start_s', 'end_s'])
    for text, start, stop in transcript:
      writer.writerow([text, f'{start:.5f}', f'{stop:.5f}'])
  return events


def transcript_path(labels_csv: str | os.PathLike) -> str:
  """Where synthesize_stream writes what every utterance said, and when:
  ``<labels_csv without .csv>.transcript.csv`` (text, start_s, end_s), the
  foreground only (not the distant talker)."""
  return os.path.splitext(os.fspath(labels_csv))[0] + '.transcript.csv'


def read_transcript(path: str | os.PathLike) -> list[tuple[str, float, float]]:
  """(text, start_s, end_s) rows of a transcript written by synthesize_stream."""
  with open(path, encoding='utf-8', newline='') as file:
    return [(row['text'], float(row['start_s']), float(row['end_s']))
            for row in csv.DictReader(file)]


def read_stream_labels(path: str | os.PathLike) -> list[KeywordEvent]:
  """Reads a ground-truth CSV (``word,start_s,end_s``, as synthesize_stream writes).

  Raises:
    FileNotFoundError: no such file.
    ValueError: other columns, or a row whose times are not finite numbers
      with ``0 <= start_s <= end_s`` or whose word is empty; names the line.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such ground-truth CSV')
  try:
    with open(path, encoding='utf-8', newline='') as file:
      reader = csv.DictReader(file)
      rows = list(reader)
      columns = reader.fieldnames or []
  except (UnicodeDecodeError, csv.Error) as error:
    raise ValueError(f'{path}: not a CSV text file ({error})') from None
  if set(columns) != {'word', 'start_s', 'end_s'}:
    raise ValueError(
        f'{path}: columns {sorted(columns)}, expected word, start_s, end_s'
    )
  events = []
  for line, row in enumerate(rows, start=2):  # line 1 is the header
    try:
      if None in row or None in row.values():
        raise ValueError('expected 3 fields')
      start, end = float(row['start_s']), float(row['end_s'])
      if not (math.isfinite(start) and math.isfinite(end) and
              0 <= start <= end):
        raise ValueError('expected finite times, 0 <= start_s <= end_s')
      if not row['word'].strip():
        raise ValueError('the word is empty')
    except ValueError as error:
      raise ValueError(
          f'{path}, line {line}: {",".join(str(v) for v in row.values())!r}: '
          f'{error}') from None
    events.append(KeywordEvent(row['word'].strip(), start, end))
  return events


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      description='Synthesize a long stream with keywords at known times.'
  )
  parser.add_argument(
      '--out', required=True, help='output WAV; the CSV goes beside it'
  )
  parser.add_argument('--minutes', type=float, default=10.0)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument(
      '--words', nargs='+', default=list(speech_commands.DEFAULT_WANTED_WORDS)
  )
  parser.add_argument(
      '--keyword-probability', type=float, default=0.5,
      help='chance that an event is a keyword; 0: a keyword-free stream')
  parser.add_argument(
      '--in-sentence-probability', type=float, default=0.0,
      help='chance that a keyword is said inside a short sentence')
  parser.add_argument(
      '--vocabulary', type=int, default=0,
      help='distractors and sentences from the N most frequent English '
      'words without the keywords and their homophones (default: the '
      'auxiliary and filler words)')
  args = parser.parse_args(argv)
  content = StreamContent(args.keyword_probability,
                          args.in_sentence_probability)
  if args.vocabulary:
    # Imported here: wordfreq is only needed for a vocabulary.
    from kws_jax.data import vocabulary  # pylint: disable=g-import-not-at-top
    words = vocabulary.negative_vocabulary(args.words, args.vocabulary).words
    content = dataclasses.replace(content, distractors=words,
                                  sentence_words=words)
  events = synthesize_stream(
      args.out, args.minutes, seed=args.seed, words=args.words,
      content=content)
  print(f'{args.out}: {args.minutes} min, {len(events)} keywords')


if __name__ == '__main__':
  main()
