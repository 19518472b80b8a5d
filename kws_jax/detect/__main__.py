"""Command line: detect keywords in a long WAV file, or evaluate on one.

    python -m kws_jax.detect (--workdir DIR | --model X.tflite) \
        (--wav LONG.wav | --mic) [--threshold 0.8] [--smoothing-ms 300] \
        [--refractory-ms 1000] [--labels-csv LONG.csv --out DIR]

prints each detection (word, time, score) as it fires. With --labels-csv (the
ground truth of ``python -m kws_jax.data.synth_stream``) it also sweeps the
threshold, prints the table and the FRR at 0.5 and 1 false accepts per hour,
and writes det_curve.png, streaming_eval.json and streaming_eval.csv to
--out. Bad input ends with a one-line error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import tqdm

from kws_jax import atomic, cli
from kws_jax.data.audio import probe_wav
from kws_jax.data.synth_stream import read_stream_labels
from kws_jax.detect import detector as detector_lib
from kws_jax.detect import metrics, runners


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m kws_jax.detect',
      description='Streaming keyword detection on a long WAV file or the '
      'microphone, and its evaluation against a ground-truth CSV.')
  model = parser.add_mutually_exclusive_group(required=True)
  model.add_argument('--workdir', help='a training run (its best checkpoint)')
  model.add_argument('--model', help='an exported streaming .tflite model')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--wav', help='the audio, of any length')
  source.add_argument('--mic', action='store_true',
                      help='the default microphone (needs sounddevice)')
  parser.add_argument('--threshold', type=float,
                      default=detector_lib.DEFAULT_THRESHOLD,
                      help='smoothed posterior that fires a detection '
                      '(default %(default)g)')
  parser.add_argument('--smoothing-ms', type=float,
                      default=detector_lib.DEFAULT_SMOOTHING_MS,
                      help='moving average of the posteriors (default '
                      '%(default)g)')
  parser.add_argument('--refractory-ms', type=float,
                      default=detector_lib.DEFAULT_REFRACTORY_MS,
                      help='the keyword that fired does not fire again '
                      'for this long; another may (default %(default)g)')
  parser.add_argument('--labels-csv',
                      help='ground truth (word,start_s,end_s): evaluate')
  parser.add_argument('--out', help='where the evaluation goes (with '
                      '--labels-csv)')
  args = parser.parse_args(argv)
  if args.labels_csv and not args.out:
    parser.error('--labels-csv needs --out DIR for the evaluation files')
  if args.out and not args.labels_csv:
    parser.error('--out is only used with --labels-csv')
  if args.labels_csv and args.mic:
    parser.error('--labels-csv evaluates a --wav file, not the microphone')
  return args


def run(args: argparse.Namespace) -> None:
  # Check the inputs and the output before loading the model (seconds) and
  # streaming the audio (minutes).
  if args.out:
    atomic.check_writable_directory(args.out, '--out')
  if args.wav:
    probe_wav(args.wav)
  else:
    detector_lib.require_sounddevice()
  events = None
  if args.labels_csv:
    events = read_stream_labels(args.labels_csv)  # fail before streaming
  if args.workdir:
    runner = runners.JaxRunner.from_workdir(args.workdir)
  else:
    if not os.path.isfile(args.model):
      raise FileNotFoundError(f'{args.model}: no such model file')
    runner = runners.tflite_runner(args.model)
  if events:
    spotted = [runner.labels[i]
               for i in detector_lib.keyword_indices(runner.labels)]
    if not set(spotted) & {event.word for event in events}:
      raise ValueError(
          f'{args.labels_csv} names {", ".join(sorted({e.word for e in events}))}'
          f', none of which the model spots ({", ".join(spotted)}): its FRR '
          'would be measured on 0 keywords')
  detector = detector_lib.Detector(
      runner, threshold=args.threshold, smoothing_ms=args.smoothing_ms,
      refractory_ms=args.refractory_ms, record=events is not None)
  if args.mic:
    print('listening; Ctrl-C stops', file=sys.stderr)
    detections = detector.feed(
        detector_lib.mic_chunks(runner.sample_rate, runner.block_samples))
  else:
    detections = detector_lib.detect_wav(detector, args.wav, progress=True)
  count = 0
  for detection in detections:
    count += 1
    tqdm.tqdm.write(f'{detection.word:<12} {detection.time_s:10.2f} s  '
                    f'score {detection.score:.3f}')
  print(f'{count} detections in {detector.time_s:.1f} s of audio '
        f'(threshold {detector.threshold:g}, smoothing '
        f'{detector.smoothing_ms:g} ms, refractory '
        f'{detector.refractory_ms:g} ms)')
  if events is None:
    return

  points = metrics.sweep(detector.recorded(), runner.labels, detector.block_s,
                         events, refractory_ms=detector.refractory_ms)
  print(metrics.table(points))
  print(metrics.summary(points))
  paths = metrics.write_results(points, args.out, {
      'wav': os.path.abspath(args.wav),
      'labels_csv': os.path.abspath(args.labels_csv),
      'model': os.path.abspath(args.workdir or args.model),
      'duration_s': detector.time_s, 'smoothing_ms': detector.smoothing_ms,
      'refractory_ms': detector.refractory_ms})
  print('wrote ' + ', '.join(paths.values()))


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(argv)
  cli.configure_xla_cpu()
  try:
    run(args)
  except KeyboardInterrupt:
    sys.exit(130)
  except (OSError, ValueError, ModuleNotFoundError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  main()
