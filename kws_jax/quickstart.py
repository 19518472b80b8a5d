"""The main job: synthesize, train, export every form, evaluate, detect.

    python -m kws_jax.quickstart [--workdir runs/quickstart] \
        [--data_dir data/synth] [--heldout_dir data/kokoro_test] \
        [--stream_minutes 10] [--config experiments/configs/embedding_dnn.py] \
        [--config.field=value ...]

1. synthesizes the built-in Speech Commands-style dataset with eSpeak NG into
   ``--data_dir`` (skipped when it is already there);
2. trains the config's model in ``--workdir`` (resumes a run already there);
   the default is a dense head on Google's frozen speech embedding;
3. exports the best weights as SavedModels and TFLite models (float,
   dynamic-range, int8; non-streaming and streaming with external and
   internal state) and measures every form's test accuracy;
4. synthesizes held-out speech with another engine, Kokoro-82M (a neural
   TTS the model never heard), into ``--heldout_dir`` and measures the model
   on it (skipped with a note when the tts extra is not installed);
5. synthesizes a long noisy stream with keywords at known times and runs
   the streaming float TFLite model over it, one step at a time: false
   rejects and false accepts per hour over thresholds, and a DET curve;
6. prints one summary table.
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from kws_jax import cli

_WORKDIR = flags.DEFINE_string('workdir', 'runs/quickstart',
                               'Directory of the run.')
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/synth',
                                'Where the synthetic dataset goes.')
_PER_WORD = flags.DEFINE_integer('per_word', 400,
                                 'Synthetic clips per keyword.')
_HELDOUT_DIR = flags.DEFINE_string(
    'heldout_dir', 'data/kokoro_test',
    'Where the held-out Kokoro speech goes (empty: skip that step).')
_HELDOUT_PER_WORD = flags.DEFINE_integer(
    'heldout_per_word', 20, 'Held-out Kokoro clips per keyword.')
_STREAM_MINUTES = flags.DEFINE_float(
    'stream_minutes', 10.0, 'Length of the synthetic stream for detection.')
_TFLITE_FORMS = cli.define_tflite_forms_flag()
DEFAULT_CONFIG = 'experiments/configs/embedding_dnn.py'
STREAM_MODEL = 'tflite_stream_state_external'


def _step(index: int, message: str) -> None:
  print(f'[{index}/6] {message}', flush=True)


def main(argv: list[str]) -> None:
  if not any(a == '--config' or a.startswith('--config=') for a in argv):
    argv = [argv[0], '--config', DEFAULT_CONFIG, *argv[1:]]
  config, rest = cli.parse_config_flags(argv)
  if len(rest) > 1:
    sys.exit(f'error: unexpected arguments: {" ".join(rest[1:])}')
  cli.configure_xla_cpu()
  # pylint: disable=g-import-not-at-top
  from kws_jax.data.synth import synthesize_dataset
  from kws_jax.data.synth_stream import synthesize_stream
  from kws_jax.detect import TfliteRunner, metrics
  from kws_jax.export import ExportError, export_run
  from kws_jax.export.pipeline import TFLITE_MODELS
  from kws_jax.heldout import kokoro_accuracy
  from kws_jax.models import wanted_words
  from kws_jax.train import train_and_evaluate
  # pylint: enable=g-import-not-at-top

  forms = _TFLITE_FORMS.value
  if forms is not None and STREAM_MODEL not in forms:
    sys.exit(f'error: --tflite_forms is {",".join(forms)}; it must include '
             f'{STREAM_MODEL}, which the detection step streams.')
  started = time.time()
  workdir, data_dir = _WORKDIR.value, _DATA_DIR.value
  words = wanted_words(config)
  _step(1, f'synthetic speech in {data_dir}')
  synthesize_dataset(data_dir, words=words, per_word=_PER_WORD.value)
  config.data.data_dir = data_dir
  try:
    _step(2, f'training {config.model.name} in {workdir}')
    train_and_evaluate(config, workdir)
    _step(3, 'exporting every form and measuring its test accuracy')
    manifest = export_run(workdir, folders=forms)
  except (ValueError, FileNotFoundError, FloatingPointError,
          ExportError) as error:
    sys.exit(f'error: {error}')

  _step(4, f'held-out speech from another engine in {_HELDOUT_DIR.value}')
  heldout = kokoro_accuracy(workdir, _HELDOUT_DIR.value, words,
                            _HELDOUT_PER_WORD.value)

  _step(5, f'streaming detection on {_STREAM_MINUTES.value:g} minutes of '
        'synthetic audio')
  stream_dir = os.path.join(workdir, 'stream_eval')
  wav = os.path.join(stream_dir, 'stream.wav')
  events = synthesize_stream(wav, _STREAM_MINUTES.value, seed=1, words=words,
                             progress=False)
  runner = TfliteRunner(os.path.join(workdir, STREAM_MODEL,
                                     TFLITE_MODELS[STREAM_MODEL][0]))
  points, _ = metrics.evaluate_stream(runner, wav, events)
  metrics.write_results(points, stream_dir, {
      'wav': os.path.abspath(wav), 'model': STREAM_MODEL,
      'minutes': _STREAM_MINUTES.value})

  _step(6, 'summary')
  _print_summary(manifest, points, heldout, started, workdir, stream_dir)


def _print_summary(manifest, points, heldout, started: float, workdir: str,
                   stream_dir: str) -> None:
  # pylint: disable=g-import-not-at-top
  from kws_jax.detect import DEFAULT_THRESHOLD, metrics
  from kws_jax.export.report import forms_table
  # pylint: enable=g-import-not-at-top
  print('\n' + forms_table(manifest))
  if heldout is not None:
    print(f'\nheld-out engine (Kokoro-82M, never trained on), '
          f'{int(heldout.confusion.sum())} clips: {heldout.accuracy:.2%} '
          f'({heldout.keyword_accuracy:.2%} on keywords alone)')
  default = min(points, key=lambda p: abs(p.threshold - DEFAULT_THRESHOLD))
  print(f'\nstreaming detection ({STREAM_MODEL}), '
        f'{points[0].hours * 60:.3g} min, {points[0].occurrences} keywords: '
        f'FRR {default.frr:.1%} at {default.fa_per_hour:.1f} FA/h '
        f'(threshold {default.threshold:g})')
  print(metrics.summary(points))
  print(f'\ntotal time {time.time() - started:.0f} s; artifacts in {workdir}: '
        'curves.png, confusion_matrix.png, manifest.json, tflite_*/, '
        f'{os.path.relpath(stream_dir, workdir)}/det_curve.png')


if __name__ == '__main__':
  main(sys.argv)
