"""Room banks, and recordings put through rooms, noise and channels.

    python -m kws_jax.data.render_acoustics --rooms-out data/rooms/eval.npz \\
        --rooms 100 --rooms-seed 1 --seed 1 \\
        --stream data/streams/eval.wav data/streams/room_eval.wav \\
        --dataset data/kokoro data/kokoro_room

makes (or reads) the room bank, then renders each stream (30 s segments,
each in its own room; its .csv ground truth is copied) and each Speech
Commands-layout dataset (every clip, `_background_noise_` copied as it is)
through `kws_jax.data.acoustics.Acoustics`. Noise comes from `--noise-dir`
or, by default, noise kinds no training recipe here mixes in
(`kws_jax.data.noise.EVALUATION_KINDS`, and pink noise): with a room bank of
another seed than training's, that is an evaluation in rooms, noise and
microphones the model never heard.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from kws_jax import atomic
from kws_jax.data import acoustics as acoustics_lib
from kws_jax.data import audio as audio_lib
from kws_jax.data import noise as noise_lib
from kws_jax.data import speech_commands

Acoustics = acoustics_lib.Acoustics
RoomBank = acoustics_lib.RoomBank


def evaluation_noise(seed: int, seconds: float = 60.0,
                     sample_rate: int = audio_lib.SAMPLE_RATE
                     ) -> list[np.ndarray]:
  """One recording of each of `noise.EVALUATION_KINDS` and of pink noise."""
  rng = np.random.default_rng([seed, 7])
  num_samples = int(seconds * sample_rate)
  return [noise_lib.evaluation_noise(kind, num_samples, rng, sample_rate)
          for kind in noise_lib.EVALUATION_KINDS] + [
              noise_lib.colored_noise('pink', num_samples, rng)]


def render_stream_file(source: str, target: str, acoustics: Acoustics,
                       rooms: RoomBank | None, noise: Sequence[np.ndarray],
                       seed: int, segment_seconds: float = 30.0) -> None:
  """Writes `source` (a WAV) through `apply_to_stream` to `target`.

  The ground truth CSV beside `source`, if any, is copied beside `target`:
  responses start at their direct path, so no word moves.
  """
  stream = audio_lib.read_wav(source, acoustics.sample_rate)
  rendered = acoustics_lib.apply_to_stream(
      stream, acoustics, np.random.default_rng(seed), rooms, noise,
      segment_seconds=segment_seconds)
  os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
  audio_lib.write_wav(target, rendered, acoustics.sample_rate)
  truth = os.path.splitext(source)[0] + '.csv'
  if os.path.exists(truth):
    with open(truth, 'rb') as file:
      contents = file.read()
    with atomic.atomic_write(os.path.splitext(target)[0] + '.csv') as file:
      file.write(contents)


def render_dataset(source: str, target: str, acoustics: Acoustics,
                   rooms: RoomBank | None, noise: Sequence[np.ndarray],
                   seed: int, batch_size: int = 64,
                   progress: bool = True) -> int:
  """Renders every clip of a Speech Commands-layout `source` into `target`.

  Clips keep their names and lengths (reverberant tails past a clip's end
  are cut); `_background_noise_` is copied unchanged. A clip already in
  `target` is kept, so a killed run resumes. Returns the clips written.
  """
  paths = sorted(
      os.path.join(word, name)
      for word in os.listdir(source)
      if os.path.isdir(os.path.join(source, word))
      and word != speech_commands.BACKGROUND_NOISE_DIR
      for name in os.listdir(os.path.join(source, word))
      if name.lower().endswith('.wav'))
  if not paths:
    raise ValueError(f'{source}: no <word>/*.wav clips to render')
  background = os.path.join(source, speech_commands.BACKGROUND_NOISE_DIR)
  if os.path.isdir(background):
    shutil.copytree(background, os.path.join(
        target, speech_commands.BACKGROUND_NOISE_DIR), dirs_exist_ok=True)
  written = 0
  batches = range(0, len(paths), batch_size)
  for first in tqdm(batches, desc=f'render {os.path.basename(source)}',
                    unit='batch', disable=not progress):
    names = paths[first:first + batch_size]
    # Draws depend on the batch's place only, so skipped clips change nothing.
    rng = np.random.default_rng([seed, first])
    todo = [not os.path.exists(os.path.join(target, n)) for n in names]
    if not any(todo):
      continue
    clips = [audio_lib.read_wav(os.path.join(source, n), acoustics.sample_rate)
             for n in names]
    length = max(len(clip) for clip in clips)
    batch = np.zeros((len(clips), length), np.float32)
    for row, clip in enumerate(clips):
      batch[row, :len(clip)] = clip
    rendered = acoustics.augment(batch, np.zeros(len(clips), bool), noise, rng,
                                 rooms)
    for name, clip, out, needed in zip(names, clips, rendered, todo):
      if needed:
        audio_lib.write_wav(os.path.join(target, name), out[:len(clip)],
                            acoustics.sample_rate)
        written += 1
  return written


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m kws_jax.data.render_acoustics',
      description=__doc__.split('\n')[0])
  parser.add_argument('--rooms-out', required=True,
                      help='the room bank .npz (made if missing)')
  parser.add_argument('--rooms', type=int, default=300)
  parser.add_argument('--rooms-seed', type=int, default=0)
  parser.add_argument('--max-rt60', type=float, default=1.0)
  parser.add_argument('--stream', nargs=2, action='append', default=[],
                      metavar=('IN_WAV', 'OUT_WAV'),
                      help='render a long recording (repeatable)')
  parser.add_argument('--dataset', nargs=2, action='append', default=[],
                      metavar=('IN_DIR', 'OUT_DIR'),
                      help='render every clip of a dataset (repeatable)')
  parser.add_argument('--noise-dir', default='',
                      help='WAV noise recordings (default: noise kinds absent '
                      'from training)')
  parser.add_argument('--seed', type=int, default=0,
                      help='the draws (rooms, SNR, channels) of the renders')
  parser.add_argument('--segment-seconds', type=float, default=30.0)
  args = parser.parse_args(argv)
  rooms = acoustics_lib.load_or_make_rooms(
      args.rooms_out, args.rooms, args.rooms_seed, rt60=(0.1, args.max_rt60))
  print(f'{args.rooms_out}: {len(rooms)} rooms, RT60 {rooms.rt60.min():.2f}-'
        f'{rooms.rt60.max():.2f} s, source-microphone '
        f'{rooms.distance.min():.1f}-{rooms.distance.max():.1f} m')
  if args.noise_dir:
    names = sorted(name for name in os.listdir(args.noise_dir)
                   if name.lower().endswith('.wav'))
    if not names:
      raise SystemExit(f'--noise-dir {args.noise_dir}: no .wav files')
    noise = [audio_lib.read_wav(os.path.join(args.noise_dir, name))
             for name in names]
  else:
    noise = evaluation_noise(args.seed)
  acoustics = Acoustics()
  for index, (source, target) in enumerate(args.stream):
    render_stream_file(source, target, acoustics, rooms, noise,
                       seed=args.seed * 1000 + index,
                       segment_seconds=args.segment_seconds)
    print(f'{source} -> {target}', flush=True)
  for index, (source, target) in enumerate(args.dataset):
    count = render_dataset(source, target, acoustics, rooms, noise,
                           seed=args.seed * 1000 + 500 + index)
    print(f'{source} -> {target}: {count} clips written', flush=True)


if __name__ == '__main__':
  main()
