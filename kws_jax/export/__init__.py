"""Export: SavedModels and TFLite models (float, dynamic-range, int8) of a run.

    python -m kws_jax.export --workdir runs/cnn

The names below load on first use: running an exported model
(``kws_jax.export.runtime``, LiteRT only) never imports TensorFlow, which
only the converting modules need.
"""

import importlib
from typing import Any

_HOMES = {
    'ExportError': 'kws_jax.export.tflite',
    'TfliteNonStreaming': 'kws_jax.export.runtime',
    'TfliteStreaming': 'kws_jax.export.runtime',
    'export_run': 'kws_jax.export.pipeline',
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
  if name not in _HOMES:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  return getattr(importlib.import_module(_HOMES[name]), name)
