"""Command line: ``python -m kws_jax.train --config FILE --workdir DIR``.

    python -m kws_jax.train --config experiments/configs/cnn.py \
        --workdir runs/cnn [--config.train.batch_size=50] [--overwrite]

Running it again with the same workdir resumes the run.
"""

from __future__ import annotations

import sys

from absl import flags

from kws_jax import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the run.')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Delete a previous run in --workdir and start fresh.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False,
    'Call jax.distributed.initialize() first (one process per machine).')


def main(argv: list[str]) -> None:
  config, rest = cli.parse_config_flags(argv)
  if len(rest) > 1:
    sys.exit(f'error: unexpected arguments: {" ".join(rest[1:])}')
  if not _WORKDIR.value:
    sys.exit('error: --workdir is required, e.g. --workdir runs/cnn')
  cli.configure_xla_cpu()
  import jax  # pylint: disable=g-import-not-at-top
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  from kws_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  try:
    train_and_evaluate(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except (ValueError, OSError, FloatingPointError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  main(sys.argv)
