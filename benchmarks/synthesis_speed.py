"""Speech synthesis cost: seconds of compute per second of speech, per engine.

    python benchmarks/synthesis_speed.py [--speakers 4] [--repeats 3]

Speaks the ten keywords and five auxiliary words with random synthetic
speakers of eSpeak NG (kws_jax.data.synth.speak_trimmed: synthesis, 22.05 ->
16 kHz, trim) and of Kokoro-82M (kws_jax.data.kokoro.Kokoro.speak_trimmed:
eSpeak's IPA, the ONNX model, 24 -> 16 kHz with the pitch shift, trim), one
word at a time as the dataset generators do, in this process. "Speech" is the
trimmed word that goes into a clip. Kokoro runs with 1 thread and with all
cores; eSpeak is single-threaded.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks.timing import median_seconds
from kws_jax.data import audio, kokoro, speech_commands, synth

WORDS = speech_commands.DEFAULT_WANTED_WORDS + synth.AUXILIARY_WORDS[:5]


def espeak_pass(speakers):
  def run():
    return [
        synth.speak_trimmed(
            word, speaker, rate=speaker.rate, pitch=speaker.pitch, seed=0
        )
        for speaker in speakers
        for word in WORDS
    ]
  return run


def kokoro_pass(engine, speakers):
  def run():
    return [
        engine.speak_trimmed(word, speaker)
        for speaker in speakers
        for word in WORDS
    ]
  return run


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--speakers', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  cores = len(os.sched_getaffinity(0))
  passes = {
      'eSpeak NG (1 thread)': espeak_pass(
          synth.random_speakers(args.speakers, np.random.default_rng(0))
      )
  }
  kokoro_speakers = kokoro.random_speakers(
      args.speakers, np.random.default_rng(0)
  )
  for threads in sorted({1, cores}):
    passes[f'Kokoro-82M int8 ONNX ({threads} thread(s))'] = kokoro_pass(
        kokoro.Kokoro(num_threads=threads), kokoro_speakers
    )
  clips = args.speakers * len(WORDS)
  print(f'{clips} words ({len(WORDS)} words x {args.speakers} speakers), '
        f'median of {args.repeats} passes, {cores} cores')
  print(f'{"engine":<36}{"speech s":>9}{"compute s":>11}{"ms/word":>9}'
        f'{"compute/speech":>16}')
  for name, run in passes.items():
    speech = sum(len(word) for word in run()) / audio.SAMPLE_RATE
    seconds = median_seconds(run, args.repeats, warmup=0)
    print(f'{name:<36}{speech:>9.1f}{seconds:>11.2f}'
          f'{1000 * seconds / clips:>9.0f}{seconds / speech:>16.3f}')


if __name__ == '__main__':
  main()
