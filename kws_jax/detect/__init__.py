"""Keyword detection on long audio, and its streaming evaluation.

    python -m kws_jax.detect --workdir runs/cnn --wav stream.wav \
        [--labels-csv stream.csv --out runs/cnn/stream_eval]

  runners   StreamingRunner: a block of audio in, logits out (JaxRunner,
            TfliteRunner);
  detector  audio sources, smoothing, threshold and refractory: Detector;
  metrics   FRR and false accepts per hour over thresholds, DET curve.
"""

from kws_jax.detect.detector import (
    DEFAULT_REFRACTORY_MS, DEFAULT_SMOOTHING_MS, DEFAULT_THRESHOLD, Detection,
    Detector, blocks, detect_wav, mic_chunks, wav_chunks,
)
from kws_jax.detect.metrics import OperatingPoint, frr_at, match, sweep
from kws_jax.detect.runners import (
    JaxRunner, StreamingRunner, TfliteRunner, tflite_runner,
)

__all__ = [
    'DEFAULT_REFRACTORY_MS', 'DEFAULT_SMOOTHING_MS', 'DEFAULT_THRESHOLD',
    'Detection', 'Detector', 'JaxRunner', 'OperatingPoint', 'StreamingRunner',
    'TfliteRunner',
    'blocks', 'detect_wav', 'frr_at', 'match', 'mic_chunks', 'sweep',
    'tflite_runner', 'wav_chunks',
]
