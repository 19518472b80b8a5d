"""Command line: ``python -m kws_jax.export --workdir DIR [--out DIR]``.

Exports the best checkpoint of a training run in every form (SavedModel,
TFLite float / dynamic-range / int8, streaming with internal and external
state), measures each one's test accuracy and writes ``manifest.json``.
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
                      help='skip the full-integer models')
  args = parser.parse_args(argv)
  from kws_jax import cli  # pylint: disable=g-import-not-at-top
  cli.configure_xla_cpu()
  from kws_jax.export import ExportError, export_run  # pylint: disable=g-import-not-at-top
  try:
    export_run(args.workdir, args.out, int8=not args.no_int8)
  except (OSError, ExportError, ValueError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  main()
