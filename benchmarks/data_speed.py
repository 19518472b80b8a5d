"""How fast the data stage is on this machine.

    python benchmarks/data_speed.py [--data DIR] [--steps 40]

1. Synthesizes the default dataset (kws_jax.data.synth, all cores) into a
   temporary directory and times it, unless --data points at an existing
   Speech Commands-style directory.
2. Times the training iterator (batch 100, full kws_streaming augmentation:
   background noise, time shift, stretch) with 1 thread and with all cores,
   and the evaluation iterator, in clips per second.
3. Compares with the appetite of a CNN train step on the same CPU: batch 100
   at 1.3-2.2 steps/s, i.e. 130-220 clips/s.
"""

import argparse
import os
import tempfile
import time

from kws_jax.data import pipeline, speech_commands, synth

BATCH_SIZE = 100
TRAIN_STEP_APPETITE = (130, 220)  # clips/s: batch 100 at 1.3-2.2 steps/s.


def clips_per_second(batches, num_batches: int) -> float:
  next(batches)  # Start-up (threads, background noise) is not timed.
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  seconds = time.perf_counter() - start
  batches.close()
  return num_batches * BATCH_SIZE / seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', help='an existing dataset (default: synthesize)')
  parser.add_argument('--steps', type=int, default=40)
  args = parser.parse_args()
  cores = pipeline.default_num_threads()
  rows = []
  with tempfile.TemporaryDirectory() as scratch:
    data_dir = args.data
    if data_dir is None:
      data_dir = os.path.join(scratch, 'synth')
      start = time.perf_counter()
      synth.synthesize_dataset(data_dir, progress=False)
      seconds = time.perf_counter() - start
      clips = sum(len(files) for _, _, files in os.walk(data_dir)) - 1
      rows.append((
          f'synthesize default dataset ({cores} processes)',
          f'{seconds:.1f} s for {clips} files',
      ))
    dataset = speech_commands.load_speech_commands(data_dir)
    for threads in sorted({1, cores}):
      rate = clips_per_second(
          pipeline.train_batches(
              dataset, BATCH_SIZE, seed=0, num_threads=threads
          ),
          args.steps,
      )
      rows.append((
          f'train iterator, full augmentation, {threads} thread(s)',
          f'{rate:.0f} clips/s',
      ))
    evaluation = pipeline.eval_batches(
        dataset, 'training', BATCH_SIZE, num_threads=cores
    )
    num_batches = pipeline.num_eval_batches(dataset, 'training', BATCH_SIZE)
    rate = clips_per_second(evaluation, min(args.steps, num_batches - 1))
    rows.append((
        f'eval iterator (no augmentation), {cores} thread(s)',
        f'{rate:.0f} clips/s',
    ))
  low, high = TRAIN_STEP_APPETITE
  rows.append(('CNN train step appetite (batch 100)', f'{low}-{high} clips/s'))
  width = max(len(name) for name, _ in rows)
  print(f"{'measurement':<{width}}  result")
  for name, value in rows:
    print(f'{name:<{width}}  {value}')
  print(f'({cores} cores: {os.cpu_count()} in the machine)')


if __name__ == '__main__':
  main()
