"""Command-line plumbing shared by the entry points (summary, train, export)."""

from __future__ import annotations

import os
import re
import sys

import ml_collections
from absl import flags
from ml_collections import config_flags


def parse_config_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS
                       ) -> tuple[ml_collections.ConfigDict, list[str]]:
  """Parses ``--config FILE`` and its ``--config.a.b=value`` overrides.

  Other flags must be defined on ``flag_values`` before the call. Exits with
  a one-line message (no traceback) for a missing config, a field that does
  not exist or a value of the wrong type.

  Returns:
    The config and the remaining positional arguments.
  """
  config_flag = config_flags.DEFINE_config_file(
      'config', None,
      'Experiment config file, e.g. experiments/configs/cnn.py; override '
      'fields with --config.section.field=value.',
      flag_values=flag_values)
  config_path = _config_path(argv)
  if config_path is not None and not os.path.isfile(config_path):
    sys.exit(f'error: --config {config_path}: no such config file, e.g. '
             'experiments/configs/cnn.py')
  try:
    rest = flag_values(argv)
  except (AttributeError, KeyError) as e:  # an override of a missing field
    text = str(e.args[0] if e.args else e)
    overrides = [a.split('=')[0] for a in argv if a.startswith('--config.')]
    components = {c: o for o in overrides for c in o.split('.')[1:]}
    field = next((t for t in re.findall(r'[A-Za-z_]\w*', text)
                  if t in components), text)
    where = components.get(field, '--config')
    hint = re.search(r'Did you mean "(\w+)"', text)
    hint = f' Did you mean {hint.group(1)!r}?' if hint else ''
    sys.exit(f'error: {where}: the config has no field {field!r}.{hint}')
  except (flags.Error, TypeError, ValueError) as e:
    sys.exit(f'error: invalid flags: {e}')
  if config_flag.value is None:
    sys.exit('error: --config is required, e.g. '
             '--config experiments/configs/cnn.py')
  return config_flag.value, rest


def define_tflite_forms_flag() -> flags.FlagHolder:
  """``--tflite_forms``: the TFLite models a command's export writes."""
  return flags.DEFINE_list(
      'tflite_forms', None,
      'TFLite models to export, comma-separated folder names of '
      'kws_jax.export.pipeline.TFLITE_MODELS (default: all of them).')


def _config_path(argv: list[str]) -> str | None:
  """The file of ``--config FILE[:ARGS]`` in ``argv``, if given."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      value = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    return value.split(':', 1)[0]
  return None


# XLA:CPU with YNNPACK (experiments/RESULTS.md, issue 13): naming any YNN
# fusion type runs convolutions on every core, about 5x faster than XLA's
# default; 'reduce' also hands reductions, with the element-wise work fused
# into them, to YNNPACK, while 'dot' (what the tools set before) leaves
# element-wise work unfused and splits large reductions into trees (a sum
# of squares over 82 MB: 45 ms against 5). Train steps ran 9% (CNN), 20%
# (DS-CNN) and 10% (GRU) faster with 'reduce', batched streaming of the CNN
# 35% faster.
FAST_CPU_FLAGS = '--xla_cpu_experimental_ynn_fusion_type=reduce'
# Any of these in XLA_FLAGS runs lax convolutions fast.
_FAST_CONV_FLAGS = ('ynn_fusion_type=reduce', 'ynn_fusion_type=dot')


def preferred_conv_implementation() -> str:
  """'xla' when this process runs lax convolutions fast, else 'im2col'.

  What the training loop builds for ``model.conv_implementation='auto'``
  (``build_model(auto_conv_implementation=...)``): lax convolutions are
  several times faster under ``FAST_CPU_FLAGS``, im2col without them.
  """
  flags_now = os.environ.get('XLA_FLAGS', '')
  return ('xla' if any(flag in flags_now for flag in _FAST_CONV_FLAGS)
          else 'im2col')


# The MFCC frontend's chunk_frames on the CPU: about 16 one-second clips at
# a time ran fastest (benchmarks/frontend_speed.py, experiments/RESULTS.md).
CPU_CHUNK_FRAMES = 1024


def preferred_chunk_frames() -> int:
  """``build_model(auto_chunk_frames=...)`` for this process's JAX backend:
  ``CPU_CHUNK_FRAMES`` on the CPU, 0 (the whole batch at once) elsewhere."""
  import jax  # pylint: disable=g-import-not-at-top
  return CPU_CHUNK_FRAMES if jax.default_backend() == 'cpu' else 0


def configure_xla_cpu() -> None:
  """Adds ``FAST_CPU_FLAGS`` to ``XLA_FLAGS`` for the entry points.

  Must run before JAX creates its CPU client (the first computation). Does
  nothing if ``XLA_FLAGS`` already sets a YNN fusion type, or when
  ``KWS_JAX_XLA_DEFAULTS=0``.
  """
  flags_now = os.environ.get('XLA_FLAGS', '')
  if os.environ.get('KWS_JAX_XLA_DEFAULTS', '1') == '0' or (
      'ynn_fusion_type' in flags_now):
    return
  os.environ['XLA_FLAGS'] = f'{flags_now} {FAST_CPU_FLAGS}'.strip()
