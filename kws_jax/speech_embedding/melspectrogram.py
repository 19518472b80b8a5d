"""openWakeWord's log-mel spectrogram (the speech embedding's input) in pure JAX.

What ``melspectrogram.onnx`` of openWakeWord 0.4.0 computes, followed by
openWakeWord's ``x / 10 + 2``, for 16 kHz audio at int16 scale (kws_jax audio
in [-1, 1] is multiplied by 32768 first):

    frame j      = audio[160 j + 56 : 160 j + 456] * hann_periodic(400)
    power        = |rfft(frame, 512)|^2                  (a 400-sample window
                                                          centred in 512)
    mel          = power @ mel_weights                   (32 Slaney bands,
                                                          60-3800 Hz)
    db           = 10 log10(max(mel, 1e-10))
    db           = max(db, max(db over the frame's bands) - clip_db)
    out          = db / 10 + 2

The ONNX model clips at 80 dB below the maximum of the *whole tensor* it is
given (every frame of every clip in the batch), which no stream can know in
advance. Here the clip is relative to each frame's own maximum: causal,
per-frame, so the stream equals the full window. It equals the ONNX model
run on one frame at a time, and differs from the ONNX model on a whole clip
only where a band lies more than 80 dB below the loudest band of another
frame (RESULTS.md measures what that changes).

Streaming: a step takes 160 new samples (10 ms) and returns one frame; the
state holds the last 320 samples; frame ``s - 2`` is the output of step
``s`` (``lookback = 2``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax import frontend as mfcc_frontend
from kws_jax.layers import base
from kws_jax.speech_embedding import weights as weights_lib

Array = jax.Array

SAMPLE_RATE = 16000
HOP = 160  # samples between frames (10 ms)
WINDOW = 400  # samples of the Hann window (25 ms)
WINDOW_OFFSET = 56  # the window's start inside ONNX's 512-sample frame
FFT_LENGTH = 512
MEL_BINS = 32
INT16_SCALE = 32768.0
POWER_FLOOR = 1e-10
DFT_IMPLEMENTATIONS = ('fft', 'matmul')


@dataclasses.dataclass(frozen=True)
class LogMelSpectrogram(base.Layer):
  """Audio ``[batch, samples]`` in [-1, 1] -> ``[batch, frames, 32]``.

  Attributes:
    name: layer name (its JAX scope in exports).
    clip_db: floor relative to each frame's loudest band, dB.
    dft: 'fft' (``jnp.fft.rfft``) or 'matmul' (a DFT matrix over the bins the
      mel bands use, with the window folded in).
    max_weight_block: split constant matmuls into blocks of at most this
      many entries (0: no split); see ``kws_jax.frontend.blocked_matmul``.
    weights_path: the npz with ``mel_weights``; None: the committed file.
  """

  name: str = 'melspectrogram'
  clip_db: float = 80.0
  dft: str = 'fft'
  max_weight_block: int = 0
  weights_path: str | None = None

  def __post_init__(self):
    if not self.clip_db > 0:
      raise ValueError(f'{self.name}: clip_db is {self.clip_db!r}, expected a '
                       'positive number of dB.')
    base.check_choice(self.name, 'dft', self.dft, DFT_IMPLEMENTATIONS)
    if self.max_weight_block < 0:
      raise ValueError(f'{self.name}: max_weight_block is '
                       f'{self.max_weight_block}, expected >= 0.')

  # -- Geometry ---------------------------------------------------------------

  @property
  def block_size(self) -> int:
    return HOP

  @property
  def lookback(self) -> int:
    return -(-(WINDOW_OFFSET + WINDOW) // HOP) - 1

  @property
  def state_samples(self) -> int:
    return self.lookback * HOP

  def num_frames(self, samples: int) -> int:
    """Frames of ``samples`` audio samples (0 if shorter than one window)."""
    usable = samples - WINDOW_OFFSET - WINDOW
    return 0 if usable < 0 else usable // HOP + 1

  def output_length(self, length: int) -> int:
    frames = self.num_frames(length)
    if frames < 1:
      raise ValueError(
          f'{self.name}: audio has {length} samples, expected at least '
          f'{WINDOW_OFFSET + WINDOW}.')
    return frames

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if tuple(in_shape) != ():
      raise ValueError(
          f'{self.name}: expects audio [batch, samples] (frames of shape ()), '
          f'got frames of shape {tuple(in_shape)}.')
    return (MEL_BINS,)

  def step_macs(self, in_shape: base.Shape = ()) -> int:
    self.output_shape(in_shape)
    bins = _tables(self).mel.shape[0]
    dft = (WINDOW * 2 * bins if self.dft == 'matmul'
           else int(2 * FFT_LENGTH * np.log2(FFT_LENGTH)))
    return dft + bins * MEL_BINS

  # -- Forms ------------------------------------------------------------------

  def apply(self, params: base.Params, audio: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    """``audio [batch, samples]`` -> ``[batch, num_frames(samples), 32]``."""
    del params, train, rng
    _check_audio(self.name, audio)
    return self.frame_features(
        self.frames(audio, self.output_length(audio.shape[1])))

  def init_state(self, batch_size: int, in_shape: base.Shape = (),
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return jnp.zeros((batch_size, self.state_samples), dtype)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    """``frame [batch, n * 160]`` new samples -> ``n`` frames ``[batch, n, 32]``."""
    del params
    blocks = base.check_blocks(self.name, frame, HOP, 'audio block')
    base.check_frame(self.name, frame, (state.shape[0], frame.shape[1]),
                     state.dtype, what='audio block')
    buffer = jnp.concatenate([state, frame], axis=1)
    features = self.frame_features(self.frames(buffer, blocks))
    return buffer[:, frame.shape[1]:], features

  # -- Pipeline ---------------------------------------------------------------

  def frames(self, audio: Array, count: int,
             offset: int = WINDOW_OFFSET) -> Array:
    """Windows ``[batch, count, 400]`` at int16 scale; window j starts at ``160 j + offset``.

    The default offset places the windows as ONNX's 512-sample frames do.
    """
    # Scale first: an int8 export then keeps the slices below in float (the
    # quantizer would otherwise give them, and the input, one int8 scale).
    audio = audio * jnp.asarray(INT16_SCALE, audio.dtype)
    return mfcc_frontend.frame_signal(audio[:, offset:], count, WINDOW, HOP)

  def frame_features(self, frames: Array) -> Array:
    """Windows ``[batch, T, 400]`` of ``frames`` -> normalized log-mel ``[batch, T, 32]``."""
    tables = _tables(self)
    dtype = frames.dtype
    if self.dft == 'matmul':
      spectrum = self._matmul(frames, tables.dft.astype(dtype))
      half = spectrum.shape[-1] // 2
      real, imag = spectrum[..., :half], spectrum[..., half:]
    else:
      spectrum = jnp.fft.rfft(frames * tables.window.astype(dtype),
                              n=FFT_LENGTH)
      real = jnp.real(spectrum)[..., tables.bins]
      imag = jnp.imag(spectrum)[..., tables.bins]
    power = real * real + imag * imag
    mel = self._matmul(power, tables.mel.astype(dtype))
    db = (10.0 / np.log(10.0)) * jnp.log(jnp.maximum(mel, POWER_FLOOR))
    db = jnp.maximum(db, jnp.max(db, axis=-1, keepdims=True) - self.clip_db)
    return db / 10.0 + 2.0

  def _matmul(self, x: Array, matrix: np.ndarray) -> Array:
    return mfcc_frontend.blocked_matmul(x, matrix, self.max_weight_block)


@dataclasses.dataclass(frozen=True)
class _Tables:
  window: np.ndarray  # [400]
  bins: slice  # rfft bins with a non-zero mel weight
  dft: np.ndarray | None  # [400, 2 * bins]: real then imaginary parts
  mel: np.ndarray  # [bins, 32]


@functools.lru_cache(maxsize=8)
def _tables(layer: LogMelSpectrogram) -> _Tables:
  mel = weights_lib.load_weights(layer.weights_path)['mel_weights'].astype(
      np.float64)
  used = np.flatnonzero(mel.any(axis=1))
  bins = slice(int(used[0]), int(used[-1]) + 1)
  window = mfcc_frontend.window_function('hann', WINDOW)
  dft = None
  if layer.dft == 'matmul':
    n = np.arange(WINDOW)[:, None]
    k = np.arange(bins.start, bins.stop)[None, :]
    angle = 2.0 * np.pi * ((n * k) % FFT_LENGTH) / FFT_LENGTH
    dft = window[:, None] * np.concatenate([np.cos(angle), -np.sin(angle)],
                                           axis=1)
  return _Tables(window=window, bins=bins, dft=dft, mel=mel[bins])


def _check_audio(name: str, audio: Array) -> None:
  if audio.ndim != 2:
    raise ValueError(f'{name}: audio has shape {tuple(audio.shape)}, expected '
                     '[batch, samples].')
  base.check_floating(name, audio, 'audio')
