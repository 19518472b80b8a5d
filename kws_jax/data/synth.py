"""A synthetic Speech Commands dataset, spoken by eSpeak NG.

    python -m kws_jax.data.synth --out data/synth [--words yes no ...] \\
        [--per-word 400] [--seed 0]

writes, in the Speech Commands layout that load_speech_commands reads:

    out/<word>/<speaker>_nohash_<n>.wav     1 s, 16 kHz, 16-bit mono
    out/_background_noise_/{white,pink,brown}_noise.wav, babble_<k>.wav

A synthetic "speaker" is one setting of eSpeak NG: an English voice (8 accents),
a variant (104 variant files, or none), base pitch, pitch range, rate, word gap
and amplitude. Its id is a hash of that setting, so the split rule of
`which_set` keeps each speaker in one split and the test split measures
generalization to unseen voices. Each utterance further varies the rate,
pitch and punctuation (intonation); the word is resampled 22.05 -> 16 kHz,
trimmed, scaled to a random peak level, placed at a random offset in the clip,
and laid on a faint noise floor.

Keywords default to Speech Commands' ten; the unknown class is spoken from its
auxiliary words. The output is a pure function of the arguments: every clip is
rendered from parameters drawn from (seed, word, n), independently of the other
clips and of the number of worker processes.

What it is not: eSpeak voices are formant synthesis, not people. A model
trained on this set is a working starting point for the pipeline and for
streaming tests, not a product; train on recorded speech for real use.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import multiprocessing
import os
import time
import zlib
from collections.abc import Sequence

import numpy as np
import tqdm

from kws_jax import atomic
from kws_jax.data import audio
from kws_jax.data import espeak
from kws_jax.data import noise
from kws_jax.data import speech_commands

AUXILIARY_WORDS = (
    'bed', 'bird', 'cat', 'dog', 'eight', 'five', 'four', 'happy', 'house',
    'marvin', 'nine', 'one', 'seven', 'sheila', 'six', 'three', 'tree', 'two',
    'wow', 'zero', 'backward', 'forward', 'follow', 'learn', 'visual',
)
# Everyday words for babble and distractor speech; none is, contains or rhymes
# closely with a default keyword.
FILLER_WORDS = (
    'the', 'a', 'and', 'then', 'we', 'they', 'will', 'was', 'it', 'this',
    'that', 'with', 'for', 'from', 'have', 'had', 'about', 'people', 'time',
    'little', 'water', 'morning', 'evening', 'garden', 'table', 'window',
    'paper', 'music', 'river', 'mountain', 'city', 'friend', 'family', 'market',
    'coffee', 'weather', 'summer', 'winter', 'think', 'make', 'take', 'see',
    'come', 'look', 'want', 'give', 'use', 'find', 'tell', 'ask', 'work',
    'seem', 'feel', 'try', 'call', 'small', 'large', 'early', 'later', 'quiet',
    'bright', 'green', 'yellow', 'purple', 'orange', 'kitchen', 'station',
    'letter', 'number', 'picture', 'story', 'basket', 'pencil', 'silver',
    'village', 'thunder', 'butter', 'middle', 'every', 'maybe', 'really',
    'slowly', 'quickly', 'because',
)
PUNCTUATION = ('', '.', '!', '?', ',')
MARKER_FILE = '.kws_jax_synth.json'
_FORMAT_VERSION = 1
_TRIM_DB = 40.0  # Trim frames quieter than the loudest frame by this much.
_FRAME = 160  # 10 ms at 16 kHz.
_NOISE_SECONDS = 60
_BABBLE_SECONDS = 30
_BABBLE_FILES = 3
_BABBLE_TALKERS = 5


@dataclasses.dataclass(frozen=True)
class Speaker:
  """One eSpeak NG voice setting: a synthetic speaker."""

  voice: str
  variant: str | None
  pitch: int
  pitch_range: int
  rate: int
  word_gap: int
  amplitude: int

  @property
  def id(self) -> str:
    """8 hex digits, stable for the setting (like Speech Commands' ids)."""
    setting = repr(dataclasses.astuple(self)).encode()
    return hashlib.sha1(setting).hexdigest()[:8]


def random_speaker(rng: np.random.Generator) -> Speaker:
  """Draws a speaker: accent, variant and prosody, uniformly in wide ranges."""
  variants = (None,) + espeak.variants()
  return Speaker(
      voice=str(rng.choice(espeak.ENGLISH_VOICES)),
      variant=variants[int(rng.integers(len(variants)))],
      pitch=int(rng.integers(15, 86)),
      pitch_range=int(rng.integers(10, 91)),
      rate=int(rng.integers(110, 231)),
      word_gap=int(rng.integers(0, 8)),
      amplitude=int(rng.integers(60, 141)),
  )


def random_speakers(count: int, rng: np.random.Generator) -> list[Speaker]:
  """`count` speakers with distinct ids."""
  speakers, ids = [], set()
  while len(speakers) < count:
    speaker = random_speaker(rng)
    if speaker.id not in ids:
      ids.add(speaker.id)
      speakers.append(speaker)
  return speakers


def trim_silence(
    samples: np.ndarray, threshold_db: float = _TRIM_DB
) -> tuple[int, int]:
  """[start, end) of the frames within threshold_db of the loudest 10 ms."""
  num_frames = max(1, len(samples) // _FRAME)
  frames = np.resize(samples, num_frames * _FRAME).reshape(num_frames, _FRAME)
  energy = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
  if energy.max() <= 0:
    return 0, 0
  loud = np.nonzero(energy >= energy.max() * 10 ** (-threshold_db / 20))[0]
  return int(loud[0]) * _FRAME, min(len(samples), (int(loud[-1]) + 1) * _FRAME)


def speak_trimmed(
    text: str,
    speaker: Speaker,
    *,
    rate: int,
    pitch: int,
    seed: int,
    max_samples: int | None = None,
) -> np.ndarray:
  """Speaks `text`, resamples to 16 kHz and trims silence: float32 [n].

  If `max_samples` is given and the speech is longer, it is spoken again
  faster (x1.25 per try, up to eSpeak's maximum rate) until it fits, or
  cropped as a last resort.
  """
  while True:
    raw = espeak.speak(
        text,
        voice=speaker.voice,
        variant=speaker.variant,
        rate=rate,
        pitch=pitch,
        pitch_range=speaker.pitch_range,
        word_gap=speaker.word_gap,
        amplitude=speaker.amplitude,
        seed=seed,
    )
    speech = audio.resample(raw, espeak.SAMPLE_RATE, audio.SAMPLE_RATE)
    start, end = trim_silence(speech)
    speech = speech[start:end]
    if max_samples is None or len(speech) <= max_samples:
      return speech
    if rate >= espeak.PARAMETER_RANGES['rate'][1]:
      return speech[:max_samples]
    rate = min(int(rate * 1.25), espeak.PARAMETER_RANGES['rate'][1])


@dataclasses.dataclass(frozen=True)
class ClipJob:
  """Everything needed to render one clip, a pure function of it."""

  path: str
  word: str
  speaker: Speaker
  text: str
  rate: int
  pitch: int
  espeak_seed: int
  peak: float  # Peak level of the word in the clip.
  offset_fraction: float  # Where in the free room of the clip the word starts.
  noise_floor: float  # RMS of the pink noise under the word.
  noise_seed: int


def render_clip(job: ClipJob) -> np.ndarray:
  """float32 [CLIP_SAMPLES]: the word scaled, placed, on its noise floor."""
  word = speak_trimmed(
      job.text,
      job.speaker,
      rate=job.rate,
      pitch=job.pitch,
      seed=job.espeak_seed,
      max_samples=int(0.95 * audio.CLIP_SAMPLES),
  )
  return place_word(
      word,
      peak=job.peak,
      offset_fraction=job.offset_fraction,
      noise_floor=job.noise_floor,
      noise_seed=job.noise_seed,
  )


def place_word(
    word: np.ndarray,
    *,
    peak: float,
    offset_fraction: float,
    noise_floor: float,
    noise_seed: int,
) -> np.ndarray:
  """float32 [CLIP_SAMPLES]: `word` scaled to `peak`, placed, on pink noise.

  The word starts at `offset_fraction` of the clip's free room; the noise
  has RMS `noise_floor` and is drawn from `noise_seed`.
  """
  clip = noise_floor * noise.colored_noise(
      'pink', audio.CLIP_SAMPLES, np.random.default_rng(noise_seed)
  )
  if len(word):
    offset = int(round(offset_fraction * (audio.CLIP_SAMPLES - len(word))))
    clip[offset : offset + len(word)] += word * (
        peak / max(float(np.abs(word).max()), 1e-6)
    )
  return np.clip(clip, -1.0, 1.0)


def _write_clip(job: ClipJob) -> str:
  if not os.path.exists(job.path):
    audio.write_wav(job.path, render_clip(job))
  return job.path


def word_key(word: str) -> int:
  """A stable integer of a word, for the random streams of its clips."""
  return zlib.crc32(word.encode('utf-8'))


def clip_job(
    out_dir: str, word: str, n: int, speakers: Sequence[Speaker], seed: int
) -> ClipJob:
  """Clip n of `word`: speaker perm[n % S], repetition n // S.

  perm is a permutation of the S speakers drawn from (seed, word); the
  utterance's variation is drawn from (seed, word, n).
  """
  order = np.random.default_rng([seed, 1, word_key(word)]).permutation(
      len(speakers)
  )
  speaker = speakers[order[n % len(speakers)]]
  repetition = n // len(speakers)
  rng = np.random.default_rng([seed, 2, word_key(word), n])
  punctuation = PUNCTUATION[int(rng.integers(len(PUNCTUATION)))]
  min_rate, max_rate = espeak.PARAMETER_RANGES['rate']
  rate = int(np.clip(speaker.rate * rng.uniform(0.9, 1.1), min_rate, max_rate))
  pitch = int(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 100))
  return ClipJob(
      path=os.path.join(out_dir, word, f'{speaker.id}_nohash_{repetition}.wav'),
      word=word,
      speaker=speaker,
      text=word + punctuation,
      rate=rate,
      pitch=pitch,
      espeak_seed=int(rng.integers(2**31)),
      peak=float(np.exp(rng.uniform(np.log(0.05), np.log(0.9)))),
      offset_fraction=float(rng.uniform()),
      noise_floor=float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-3)))),
      noise_seed=int(rng.integers(2**31)),
  )


def random_sentence(
    rng: np.random.Generator,
    words: Sequence[str] = FILLER_WORDS,
    num_words: tuple[int, int] = (5, 12),
) -> str:
  """num_words[0] to num_words[1] random words with a final punctuation mark."""
  chosen = rng.choice(words, int(rng.integers(num_words[0], num_words[1] + 1)))
  return ' '.join(chosen) + str(rng.choice(['.', '!', '?']))


def speech_track(
    num_samples: int,
    rng: np.random.Generator,
    words: Sequence[str] = FILLER_WORDS,
) -> np.ndarray:
  """One talker saying random sentences, short pauses: float32 [num_samples]."""
  track = np.zeros(num_samples, np.float32)
  position = int(rng.integers(0, audio.SAMPLE_RATE))
  speaker = random_speaker(rng)
  while position < num_samples:
    sentence = speak_trimmed(
        random_sentence(rng, words),
        speaker,
        rate=speaker.rate,
        pitch=speaker.pitch,
        seed=int(rng.integers(2**31)),
    )
    end = min(num_samples, position + len(sentence))
    track[position:end] = sentence[: end - position]
    position = end + int(rng.uniform(0.1, 0.8) * audio.SAMPLE_RATE)
  return track


def babble(
    num_samples: int, rng: np.random.Generator, talkers: int = _BABBLE_TALKERS
) -> np.ndarray:
  """Talkers at random levels, summed: float32 [num_samples], RMS 0.1."""
  mix = np.zeros(num_samples, np.float32)
  for _ in range(talkers):
    track = speech_track(num_samples, rng)
    mix += track * np.float32(
        rng.uniform(0.3, 1.0) / max(float(np.sqrt(np.mean(track**2))), 1e-6)
    )
  return mix * np.float32(0.1 / max(float(np.sqrt(np.mean(mix**2))), 1e-6))


@dataclasses.dataclass(frozen=True)
class NoiseJob:
  """One _background_noise_ file to render."""

  path: str
  kind: str  # "white", "pink", "brown" or "babble".
  seconds: int
  seed: Sequence[int]


def _write_noise(job: NoiseJob) -> str:
  if not os.path.exists(job.path):
    rng = np.random.default_rng(list(job.seed))
    num_samples = job.seconds * audio.SAMPLE_RATE
    if job.kind == 'babble':
      samples = babble(num_samples, rng)
    else:
      samples = 0.15 * noise.colored_noise(job.kind, num_samples, rng)
    audio.write_wav(job.path, np.clip(samples, -1.0, 1.0))
  return job.path


def noise_jobs(out_dir: str, seed: int) -> list[NoiseJob]:
  directory = os.path.join(out_dir, speech_commands.BACKGROUND_NOISE_DIR)
  jobs = [
      NoiseJob(
          os.path.join(directory, f'{color}_noise.wav'),
          color,
          _NOISE_SECONDS,
          (seed, 3, index),
      )
      for index, color in enumerate(('white', 'pink', 'brown'))
  ]
  jobs += [
      NoiseJob(
          os.path.join(directory, f'babble_{k}.wav'),
          'babble',
          _BABBLE_SECONDS,
          (seed, 4, k),
      )
      for k in range(_BABBLE_FILES)
  ]
  return jobs


def run_job(job: ClipJob | NoiseJob) -> str:
  return _write_clip(job) if isinstance(job, ClipJob) else _write_noise(job)


def check_marker(out_dir: str, config: dict) -> bool:
  """True if out_dir holds a complete set for `config`; raises if another."""
  path = os.path.join(out_dir, MARKER_FILE)
  if not os.path.exists(path):
    return False
  with open(path, encoding='utf-8') as file:
    existing = json.load(file)
  differences = sorted(
      key
      for key in set(config) | set(existing['config'])
      if config.get(key) != existing['config'].get(key)
  )
  if differences:
    found = ', '.join(
        f"{key}={existing['config'].get(key)!r}" for key in differences
    )
    raise ValueError(
        f'{out_dir} holds a synthetic dataset made with other settings '
        f'({found}); use another --out directory or delete it'
    )
  return bool(existing['complete'])


def dataset_speakers(out_dir: str | os.PathLike) -> dict[str, Speaker]:
  """The speakers of a dataset made by synthesize_dataset, by id.

  Recomputed from the settings in its marker file (speakers are a function
  of the seed), so experiments can split a dataset by accent or variant.

  Raises:
    FileNotFoundError: out_dir was not made by synthesize_dataset.
    ValueError: out_dir was made by another engine (kws_jax.data.kokoro).
  """
  path = os.path.join(os.fspath(out_dir), MARKER_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path}: not found; {out_dir} was not made by kws_jax.data.synth'
    )
  with open(path, encoding='utf-8') as file:
    config = json.load(file)['config']
  engine = config.get('engine', 'espeak')
  if engine != 'espeak':
    raise ValueError(
        f'{out_dir} was synthesized by {engine}, not eSpeak NG; read its '
        f'speakers with kws_jax.data.{engine}.dataset_speakers'
    )
  speakers = random_speakers(
      config['num_speakers'], np.random.default_rng([config['seed'], 0])
  )
  return {speaker.id: speaker for speaker in speakers}


def write_marker(out_dir: str, config: dict, complete: bool) -> None:
  with atomic.atomic_write(os.path.join(out_dir, MARKER_FILE), 'w') as file:
    json.dump({'config': config, 'complete': complete}, file, indent=1)


def synthesize_dataset(
    out_dir: str | os.PathLike,
    words: Sequence[str] = speech_commands.DEFAULT_WANTED_WORDS,
    per_word: int = 400,
    *,
    unknown_words: Sequence[str] = AUXILIARY_WORDS,
    per_unknown_word: int | None = None,
    hard_negatives: Sequence[str] = (),
    per_hard_negative: int | None = None,
    num_speakers: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    background_noise: bool = True,
    progress: bool = True,
) -> str:
  """Synthesizes a Speech Commands-style dataset into `out_dir`.

  Args:
    out_dir: Output root; created if needed.
    words: Keywords, per_word clips each.
    per_word: Clips per keyword.
    unknown_words: Words for the _unknown_ class (keywords among them are
      left out).
    per_unknown_word: Clips per unknown word (default: per_word // 5).
    hard_negatives: More words for the _unknown_ class, each said more
      often: the phonetic near-misses of the keywords (see
      kws_jax.data.vocabulary). Keywords among them are left out; unknown
      words among them are said per_hard_negative times.
    per_hard_negative: Clips per hard negative (default: per_word // 20).
    num_speakers: Synthetic speakers (default: per_word // 2, at least 10);
      each keyword is said by every speaker about per_word / num_speakers times.
    seed: Determines everything; the output does not depend on `workers`.
    workers: Processes (default: all cores); 1 renders in this process.
    background_noise: Also write _background_noise_ (white, pink and brown
      noise, 60 s each, and 3 files of 30 s of 5-talker babble).
    progress: Show a tqdm bar.

  Returns:
    out_dir. Re-running with the same arguments is a no-op on a complete
    directory and resumes an interrupted one (files are written atomically).

  Raises:
    ValueError: out_dir holds a dataset made with other settings.
  """
  out_dir = os.fspath(out_dir)
  words = tuple(words)
  hard_negatives = tuple(dict.fromkeys(
      word for word in hard_negatives if word not in words))
  unknown_words = tuple(dict.fromkeys(
      word for word in unknown_words
      if word not in words and word not in hard_negatives))
  for word in words + unknown_words + hard_negatives:
    if not word or os.sep in word or word.startswith(('.', '_')):
      raise ValueError(
          f'word {word!r}: not usable as a folder name (empty, with '
          f'{os.sep!r}, or starting with "." or "_")'
      )
  if per_word < 1:
    raise ValueError(f'per_word={per_word}, expected >= 1')
  per_unknown_word = (
      max(1, per_word // 5) if per_unknown_word is None else per_unknown_word
  )
  per_hard_negative = (
      max(1, per_word // 20) if per_hard_negative is None else per_hard_negative
  )
  num_speakers = (
      max(10, per_word // 2) if num_speakers is None else num_speakers
  )
  config = {
      'format': _FORMAT_VERSION,
      'words': list(words),
      'unknown_words': list(unknown_words),
      'per_word': per_word,
      'per_unknown_word': per_unknown_word,
      'num_speakers': num_speakers,
      'seed': seed,
      'background_noise': background_noise,
  }
  if hard_negatives:  # Only then: older markers stay valid.
    config['hard_negatives'] = list(hard_negatives)
    config['per_hard_negative'] = per_hard_negative
  os.makedirs(out_dir, exist_ok=True)
  if check_marker(out_dir, config):
    return out_dir
  write_marker(out_dir, config, complete=False)
  for stale in glob.glob(os.path.join(glob.escape(out_dir), '*', '.*.tmp')):
    os.unlink(stale)  # Left by an interrupted run.

  speakers = random_speakers(num_speakers, np.random.default_rng([seed, 0]))
  jobs: list[ClipJob | NoiseJob] = (
      noise_jobs(out_dir, seed) if background_noise else []
  )
  for word_list, count in ((words, per_word), (unknown_words, per_unknown_word),
                           (hard_negatives, per_hard_negative)):
    jobs += [
        clip_job(out_dir, word, n, speakers, seed)
        for word in word_list
        for n in range(count)
    ]
  workers = workers or len(os.sched_getaffinity(0))
  bar = tqdm.tqdm(
      total=len(jobs),
      desc=f'synthesizing {out_dir}',
      unit='clip',
      disable=not progress,
  )
  with bar:
    if workers == 1:
      for job in jobs:
        run_job(job)
        bar.update()
    else:
      methods = multiprocessing.get_all_start_methods()
      context = multiprocessing.get_context(
          'fork' if 'fork' in methods else 'spawn'
      )
      with context.Pool(workers) as pool:
        # chunksize 1: the babble jobs are long, and must not queue up together.
        for _ in pool.imap_unordered(run_job, jobs, chunksize=1):
          bar.update()
  write_marker(out_dir, config, complete=True)
  return out_dir


def dataset_argument_parser(description: str, per_word: int
                            ) -> argparse.ArgumentParser:
  """The command-line flags every dataset synthesizer shares."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument(
      '--words',
      nargs='+',
      default=list(speech_commands.DEFAULT_WANTED_WORDS),
      help='keywords',
  )
  parser.add_argument(
      '--unknown-words', nargs='+', default=list(AUXILIARY_WORDS)
  )
  parser.add_argument(
      '--per-word', type=int, default=per_word, help='clips per keyword'
  )
  parser.add_argument(
      '--per-unknown-word',
      type=int,
      default=None,
      help='default: per-word // 5',
  )
  parser.add_argument(
      '--speakers', type=int, default=None, help='default: per-word // 2'
  )
  parser.add_argument('--seed', type=int, default=0)
  return parser


def add_vocabulary_arguments(parser: argparse.ArgumentParser) -> None:
  """--vocabulary and --per-near-miss: a large _unknown_ vocabulary."""
  parser.add_argument(
      '--vocabulary',
      type=int,
      default=0,
      help='add the N most frequent English words (no keyword, no '
      'homophone) to --unknown-words, and the near-misses of each keyword '
      'as hard negatives (kws_jax.data.vocabulary); 0: none',
  )
  parser.add_argument(
      '--per-near-miss',
      type=int,
      default=None,
      help='clips per near-miss (default: per-word // 20)',
  )


def vocabulary_words(
    args: argparse.Namespace,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(unknown words, hard negatives) of the parsed dataset flags."""
  if args.vocabulary < 0:
    raise SystemExit(f'error: --vocabulary {args.vocabulary}, expected >= 0')
  if not args.vocabulary:
    return tuple(args.unknown_words), ()
  # Imported here: wordfreq is only needed for a vocabulary.
  from kws_jax.data import vocabulary  # pylint: disable=g-import-not-at-top
  negatives = vocabulary.negative_vocabulary(args.words, args.vocabulary)
  unknown = tuple(dict.fromkeys(list(args.unknown_words) +
                                list(negatives.words)))
  return unknown, negatives.all_near_misses()


def main(argv: Sequence[str] | None = None) -> None:
  parser = dataset_argument_parser(
      'Synthesize a Speech Commands-style dataset with eSpeak NG.', 400
  )
  parser.add_argument(
      '--workers', type=int, default=None, help='default: all cores'
  )
  add_vocabulary_arguments(parser)
  args = parser.parse_args(argv)
  unknown_words, hard_negatives = vocabulary_words(args)
  start = time.perf_counter()
  synthesize_dataset(
      args.out,
      args.words,
      args.per_word,
      unknown_words=unknown_words,
      per_unknown_word=args.per_unknown_word,
      hard_negatives=hard_negatives,
      per_hard_negative=args.per_near_miss,
      num_speakers=args.speakers,
      seed=args.seed,
      workers=args.workers,
  )
  print(f'{args.out}: done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
  main()
