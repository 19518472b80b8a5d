"""A ctypes driver for eSpeak NG, as shipped by the `espeakng-loader` wheel.

eSpeak NG is a formant synthesizer: robotic but intelligible, fast, and
pip-installable together with its voice data. kws_jax uses it to synthesize a
Speech Commands-style dataset offline.

    audio = speak("left", voice="en-us", variant="f2", rate=160, pitch=60)
    # float32 [num_samples] in [-1, 1] at SAMPLE_RATE (22050 Hz)

Determinism. The library is process-global C state (one voice, one callback),
and its wave generator keeps static state across utterances (pitch-flutter
phase, cycle counters, the echo buffer) that `espeak_Terminate` does not reset:
the same text synthesized twice differs by a few samples; some variants also
draw noise from libc's rand(). So every `speak` call loads a fresh instance of
the library (dlopen), initializes it, seeds eSpeak's PRNG and libc's rand(),
synthesizes and unloads the library again (dlclose), under a process-wide lock.
That costs about 3 ms per call and makes `speak` a pure function of its
arguments, whatever ran before in the process; worker pools may therefore
schedule utterances in any order. (This holds while nothing else in the process
keeps libespeak-ng loaded, e.g. a phonemizer: dlclose would not unload it.)
`phonemize` (text to IPA, espeak_TextToPhonemes) follows the same discipline.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import dataclasses
import functools
import os
import threading
from collections.abc import Iterator, Sequence

import espeakng_loader
import numpy as np

SAMPLE_RATE = 22050  # What espeak_Initialize returns for eSpeak NG's voices.

# The English voice files of eSpeak NG (lang/gmw/en*), named as
# espeak_SetVoiceByName accepts them, without en-Shaw (the Shavian script).
ENGLISH_VOICES = (
    'en',  # Great Britain.
    'en-us',
    'en-029',  # Caribbean.
    'en-gb-scotland',
    'en-gb-x-gbclan',  # Lancaster.
    'en-gb-x-gbcwmd',  # West Midlands.
    'en-gb-x-rp',  # Received Pronunciation.
    'en-us-nyc',
)

# (minimum, maximum) accepted per parameter: rate in words per minute, word_gap
# in units of 10 ms, the others relative to the voice's nominal values.
PARAMETER_RANGES = {
    'rate': (80, 450),
    'amplitude': (0, 200),
    'pitch': (0, 100),
    'pitch_range': (0, 100),
    'word_gap': (0, 100),
}

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_PHONEMES_TIE = 0x80  # Bits 8-23 then hold the tie character.
IPA_TIE = '\u0361'  # COMBINING DOUBLE INVERTED BREVE, as in "t͡ʃ".
_POS_CHARACTER = 1
_EE_OK = 0
_PARAMETER_IDS = {
    'rate': 1,
    'amplitude': 2,
    'pitch': 3,
    'pitch_range': 4,
    'word_gap': 7,
}

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _VoiceStruct(ctypes.Structure):
  _fields_ = [
      ('name', ctypes.c_char_p),
      ('languages', ctypes.c_void_p),  # Decoded by _parse_languages.
      ('identifier', ctypes.c_char_p),
      ('gender', ctypes.c_ubyte),
      ('age', ctypes.c_ubyte),
      ('variant', ctypes.c_ubyte),
      ('xx1', ctypes.c_ubyte),
      ('score', ctypes.c_int),
      ('spare', ctypes.c_void_p),
  ]


@dataclasses.dataclass(frozen=True)
class Voice:
  """One entry of eSpeak NG's voice list.

  Attributes:
    name: Human-readable name, e.g. "English (America)".
    identifier: Path below the voices directory, e.g. "gmw/en-US".
    languages: Language codes it speaks, best first, e.g. ("en-us", "en").
  """

  name: str
  identifier: str
  languages: tuple[str, ...]


# The process's C library: eSpeak also draws from its rand().
_libc = ctypes.CDLL(None)
_lock = threading.Lock()
# Samples of the current utterance, from the synth callback (under _lock).
_chunks: list[np.ndarray] = []


def _collect(samples, num_samples, events) -> int:
  del events
  if num_samples > 0 and samples:
    _chunks.append(np.ctypeslib.as_array(samples, shape=(num_samples,)).copy())
  return 0  # 0: go on synthesizing.


# Module-level so that ctypes keeps the C trampoline alive.
_callback = _SynthCallback(_collect)


def _renew_lock_after_fork() -> None:
  # A forked child does not inherit the thread that may have held the lock.
  global _lock
  _lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock_after_fork)


@contextlib.contextmanager
def _fresh_library() -> Iterator[ctypes.CDLL]:
  """Loads, initializes, and finally terminates and unloads libespeak-ng."""
  with _lock:
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    try:
      lib.espeak_Initialize.argtypes = [
          ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int
      ]
      sample_rate = lib.espeak_Initialize(
          _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path().encode(), 0
      )
      if sample_rate != SAMPLE_RATE:
        raise RuntimeError(
            f'espeak_Initialize with data {data_path()!r} returned '
            f'{sample_rate}, expected the sample rate {SAMPLE_RATE}'
        )
      lib.espeak_SetSynthCallback(_callback)
      try:
        yield lib
      finally:
        lib.espeak_Terminate()
    finally:
      _ctypes.dlclose(lib._handle)


def data_path() -> str:
  """The espeak-ng-data directory that ships with espeakng-loader."""
  return espeakng_loader.get_data_path()


@functools.cache
def variants() -> tuple[str, ...]:
  """Names of the voice variant files (data_path()/voices/!v), sorted.

  A variant changes pitch, formants, breathiness or the synthesizer (Klatt)
  of a voice; select one with `speak(..., variant=name)`.
  """
  directory = os.path.join(data_path(), 'voices', '!v')
  return tuple(
      sorted(
          name
          for name in os.listdir(directory)
          if os.path.isfile(os.path.join(directory, name))
      )
  )


def _parse_languages(address: int) -> tuple[str, ...]:
  """Decodes speak_lib.h's language list: (priority byte, name, NUL)*, 0."""
  languages = []
  while ctypes.c_ubyte.from_address(address).value != 0:
    name = ctypes.string_at(address + 1)
    languages.append(name.decode())
    address += len(name) + 2
  return tuple(languages)


def list_voices() -> tuple[Voice, ...]:
  """All voices of eSpeak NG's data, as espeak_ListVoices reports them."""
  with _fresh_library() as lib:
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
    entries = lib.espeak_ListVoices(None)
    voices = []
    index = 0
    while entries[index]:
      entry = entries[index].contents
      voices.append(
          Voice(
              name=entry.name.decode(),
              identifier=entry.identifier.decode(),
              languages=_parse_languages(entry.languages),
          )
      )
      index += 1
  return tuple(voices)


def english_voices() -> tuple[Voice, ...]:
  """The voices whose first language is English (en-Shaw excluded)."""
  return tuple(
      voice
      for voice in list_voices()
      if voice.languages
      and voice.languages[0].split('-')[0] == 'en'
      and voice.identifier != 'gmw/en-Shaw'
  )


def speak(
    text: str,
    voice: str = 'en-us',
    variant: str | None = None,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    word_gap: int = 0,
    amplitude: int = 100,
    seed: int = 0,
) -> np.ndarray:
  """Synthesizes `text` with eSpeak NG; a pure function of its arguments.

  Args:
    text: UTF-8 text; punctuation shapes the intonation ("yes." vs "yes?").
    voice: A voice file name such as "en-us" (see ENGLISH_VOICES).
    variant: Optional variant name from `variants()`, e.g. "m3", "f2", "klatt".
    rate: Speaking rate in words per minute, 80..450.
    pitch: Base pitch, 0..100 (50 is the voice's normal pitch).
    pitch_range: Intonation range, 0..100 (0 is a monotone).
    word_gap: Extra pause between words, in units of 10 ms.
    amplitude: Volume, 0..200.
    seed: Seed of the noise (breath, Klatt voices) eSpeak mixes in.

  Returns:
    float32 [num_samples] in [-1, 1] at SAMPLE_RATE, including the short
    silences eSpeak puts before and after the speech.

  Raises:
    ValueError: an unknown voice or variant, or a parameter out of range.
  """
  parameters = {
      'rate': rate,
      'pitch': pitch,
      'pitch_range': pitch_range,
      'word_gap': word_gap,
      'amplitude': amplitude,
  }
  for name, value in parameters.items():
    low, high = PARAMETER_RANGES[name]
    if not low <= value <= high:
      raise ValueError(f'speak(): {name}={value} is outside [{low}, {high}]')
  if variant is not None and variant not in variants():
    raise ValueError(
        f'speak(): eSpeak NG has no variant {variant!r}; see variants()'
    )
  voice_name = voice if variant is None else f'{voice}+{variant}'
  encoded = text.encode('utf-8')
  with _fresh_library() as lib:
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    if lib.espeak_SetVoiceByName(voice_name.encode()) != _EE_OK:
      raise ValueError(
          f'speak(): eSpeak NG has no voice {voice!r}; see ENGLISH_VOICES'
      )
    lib.espeak_SetParameter.argtypes = [ctypes.c_int] * 3
    for name, value in parameters.items():
      lib.espeak_SetParameter(_PARAMETER_IDS[name], int(value), 0)
    # eSpeak draws noise (breath, Klatt voices) from its own PRNG and from
    # libc's rand(); seed both.
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed(seed)
    _libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    _chunks.clear()
    status = lib.espeak_Synth(
        encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
    )
    if status != _EE_OK:
      raise RuntimeError(f'espeak_Synth({text!r}) failed with status {status}')
    lib.espeak_Synchronize()
    chunks = list(_chunks)
    _chunks.clear()
  if not chunks:
    return np.zeros((0,), np.float32)
  return np.concatenate(chunks).astype(np.float32) / 32768.0


def phonemize(text: str, voice: str = 'en-us', *, tie: bool = False) -> str:
  """eSpeak NG's IPA transcription of `text` (espeak_TextToPhonemes).

  Like `speak`, a pure function of its arguments (a fresh library per call).

      phonemize('yes')  # 'jˈɛs'
      phonemize('go', tie=True)  # 'ɡˈo͡ʊ'

  Args:
    text: UTF-8 text.
    voice: A voice file name such as "en-us" (see ENGLISH_VOICES).
    tie: Join the letters of each multi-letter phoneme with IPA_TIE, so that
      e.g. the diphthong "a͡ɪ" can be told from "a" followed by "ɪ".

  Returns:
    IPA with eSpeak's stress marks (ˈ ˌ, before the stressed vowel) and
    spaces between words. Punctuation is not transcribed: the clauses it
    separates are joined by a space. "" for text without words.

  Raises:
    ValueError: an unknown voice.
  """
  return phonemize_each([text], voice, tie=tie)[0]


def phonemize_each(
    texts: Sequence[str], voice: str = 'en-us', *, tie: bool = False
) -> list[str]:
  """`phonemize` of each text, transcribed separately, with one library load.

  About 30x faster than one `phonemize` call per text for short texts (the
  library load dominates), and unlike one call on the joined texts each
  transcription is independent of its neighbours.
  """
  mode = _PHONEMES_IPA | ((_PHONEMES_TIE | ord(IPA_TIE) << 8) if tie else 0)
  with _fresh_library() as lib:
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
      raise ValueError(
          f'phonemize(): eSpeak NG has no voice {voice!r}; see ENGLISH_VOICES'
      )
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int
    ]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    transcriptions = []
    for text in texts:
      buffer = ctypes.create_string_buffer(text.encode('utf-8'))
      # eSpeak advances the pointer clause by clause and sets it to NULL at
      # the end of the text.
      pointer = ctypes.c_void_p(ctypes.addressof(buffer))
      clauses = []
      while pointer.value:
        phonemes = lib.espeak_TextToPhonemes(
            ctypes.byref(pointer), _CHARS_UTF8, mode
        )
        if phonemes:
          clauses.append(phonemes.decode('utf-8').strip())
      transcriptions.append(' '.join(clause for clause in clauses if clause))
  return transcriptions
