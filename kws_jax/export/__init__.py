"""Export: SavedModels and TFLite models (float, dynamic-range, int8) of a run.

    python -m kws_jax.export --workdir runs/cnn
"""

from kws_jax.export.pipeline import export_run
from kws_jax.export.runtime import TfliteNonStreaming, TfliteStreaming
from kws_jax.export.tflite import ExportError

__all__ = ['ExportError', 'TfliteNonStreaming', 'TfliteStreaming',
           'export_run']
