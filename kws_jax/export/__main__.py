"""Command line: ``python -m kws_jax.export --workdir DIR [--out DIR]``.

Exports the best checkpoint of a training run in every form (SavedModel,
TFLite float / dynamic-range / int8, streaming with internal and external
state), measures each one's test accuracy and writes ``manifest.json``;
``--micro`` adds the full-integer model for TensorFlow Lite Micro
(``kws_jax.export.micro``); ``--esphome`` the single-keyword model and
manifest for ESPHome's micro_wake_word (``kws_jax.export.esphome``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m kws_jax.export',
                                   description=__doc__.splitlines()[2])
  parser.add_argument('--workdir', required=True, help='training run')
  parser.add_argument('--out', default=None,
                      help='output directory (default: the workdir)')
  parser.add_argument('--no-int8', action='store_true',
                      help='skip the int8 models')
  parser.add_argument('--forms', default=None,
                      help='comma-separated TFLite folders to write (default: '
                      'all of kws_jax.export.pipeline.TFLITE_MODELS)')
  parser.add_argument('--micro', action='store_true',
                      help='also write the full-integer streaming model for '
                      'TensorFlow Lite Micro, its C array and an example '
                      '(micro/)')
  parser.add_argument('--max-arena-bytes', type=int, default=None,
                      help='with --micro: refuse a model whose tensor arena '
                      'exceeds this')
  parser.add_argument('--max-flash-bytes', type=int, default=None,
                      help='with --micro: refuse a model larger than this')
  parser.add_argument('--esphome', action='store_true',
                      help='also write the wake-word model and manifest for '
                      "ESPHome's micro_wake_word (esphome/); the run must be "
                      'one keyword on micro features every 10 ms')
  parser.add_argument('--languages', default='en',
                      help='with --esphome: comma-separated trained_languages')
  parser.add_argument('--author', default='kws_jax',
                      help='with --esphome: the manifest\'s author')
  parser.add_argument('--website', default=None,
                      help='with --esphome: the manifest\'s website')
  args = parser.parse_args(argv)
  if not (args.micro or args.esphome) and (args.max_arena_bytes or
                                           args.max_flash_bytes):
    parser.error('--max-arena-bytes and --max-flash-bytes need --micro or '
                 '--esphome')
  from kws_jax import cli  # pylint: disable=g-import-not-at-top
  cli.configure_xla_cpu()
  from kws_jax.export import ExportError, export_run  # pylint: disable=g-import-not-at-top
  from kws_jax.export.micro import Budget  # pylint: disable=g-import-not-at-top
  try:
    export_run(args.workdir, args.out, int8=not args.no_int8,
               folders=args.forms.split(',') if args.forms else None,
               micro=args.micro, budget=Budget(args.max_arena_bytes,
                                               args.max_flash_bytes),
               esphome=args.esphome, esphome_manifest={
                   'languages': args.languages.split(','),
                   'author': args.author, 'website': args.website})
  except (OSError, ExportError, ValueError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  main()
