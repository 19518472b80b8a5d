"""MFCC / log-mel frontend in pure JAX, as a streaming layer.

With default settings it computes kws_streaming's ``mfcc_tf`` features, which
equal this TensorFlow pipeline (verified in tests/test_frontend.py):

    frames = tf.signal.frame(audio, 640, 320)           # 40 ms / 20 ms at 16 kHz
    spectrum = abs(tf.signal.rfft(frames * hann_periodic(640), [1024]))
    mel = spectrum @ tf.signal.linear_to_mel_weight_matrix(40, 513, 16000, 20, 7000)
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log(max(mel, 1e-12)))[..., :20]

so one second of audio gives ``[49, 20]`` features. Optional pre-emphasis is
applied per frame as in kws_streaming: ``y[0] = (1 - a) x[0]``,
``y[i] = x[i] - a x[i - 1]``.

Streaming: a step takes ``stride`` new samples (``[batch, stride]``, 320 =
20 ms by default) and returns one feature frame ``[batch, 1, features]``. The
state ``[batch, stride * (ceil(window / stride) - 1)]`` holds the latest past
samples (``window - stride = 320`` by default). A step emits the frame that
starts at the oldest buffered sample, so streamed frames are exactly the
frames of ``tf.signal.frame``; ``lookback = ceil(window / stride) - 1`` warm-up
frames come first (one by default).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.layers import base
from kws_jax.layers.window import TimeWindow

Array = jax.Array

WINDOW_TYPES = ('hann', 'hann_offset', 'none')
DFT_IMPLEMENTATIONS = ('fft', 'matmul')


class FramedAudio:
  """The framing geometry of an audio frontend (a mixin for ``base.Layer``).

  Audio ``[batch, samples]`` is cut into windows of ``window_size_ms`` every
  ``window_stride_ms`` (``padding`` 'valid' or 'semicausal', see
  ``TimeWindow``), one feature frame of ``num_features`` per window. The
  layer defines ``name``, ``sample_rate``, the two durations, ``padding`` and
  ``num_features``.
  """

  @property
  def window_samples(self) -> int:
    return int(round(self.sample_rate * self.window_size_ms / 1000.0))

  @property
  def stride_samples(self) -> int:
    return int(round(self.sample_rate * self.window_stride_ms / 1000.0))

  @property
  def block_size(self) -> int:
    return self.stride_samples

  @property
  def window(self) -> TimeWindow:
    """Windows of ``window_samples`` every ``stride_samples``, placed by ``padding``."""
    return TimeWindow(self.window_samples, self.stride_samples, self.padding)

  @property
  def pads_past(self) -> bool:
    return self.window.left_pad > 0

  @property
  def lookback(self) -> int:
    return self.window.lookback

  def output_length(self, length: int) -> int:
    frames = self.window.output_length(length)
    if frames < 1:
      raise ValueError(
          f'{self.name}: audio has {length} samples, expected at least one '
          f'window of {self.window_samples} samples '
          f'({self.window_size_ms:g} ms at {self.sample_rate} Hz).')
    return frames

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if tuple(in_shape) != ():
      raise ValueError(
          f'{self.name}: expects audio [batch, samples] (frames of shape ()), '
          f'got frames of shape {tuple(in_shape)}.')
    return (self.num_features,)


@dataclasses.dataclass(frozen=True)
class MfccFrontend(FramedAudio, base.Layer):
  """Audio ``[batch, samples]`` -> features ``[batch, frames, num_features]``.

  Attributes:
    sample_rate: of the input audio, Hz.
    window_size_ms, window_stride_ms: frame length and hop.
    fft_length: DFT size; None means the next power of two >= the window.
    mel_num_bins, mel_lower_edge_hertz, mel_upper_edge_hertz: the triangular
      mel filter bank of ``tf.signal.linear_to_mel_weight_matrix``.
    fft_magnitude_squared: power spectrum instead of magnitude.
    log_epsilon: floor applied before the log.
    dct_num_features: MFCCs kept; 0 returns the log-mel spectrogram.
    preemph: pre-emphasis coefficient (0 disables it).
    window_type: 'hann' (periodic), 'hann_offset' (kws_streaming's half-sample
      shifted Hann) or 'none'.
    dft: 'fft' (``jnp.fft.rfft``) or 'matmul' (a DFT matrix restricted to the
      bins the mel filters use, with window and pre-emphasis folded in; one
      matmul, no FFT op, as kws_streaming's default ``use_tf_fft=False``).
    max_weight_block: 0 multiplies by each constant matrix at once; n > 0
      splits the contraction into blocks of at most n matrix entries, summed.
      Same math; the exporter uses 1023 because TFLite's weight quantizer
      leaves matrices under 1024 entries in float, which keeps the frontend
      of quantized models exact.
    padding: 'valid' (kws_streaming's framing: frame ``i`` covers samples
      ``[i s, i s + window)``, one warm-up frame when streaming 40/20 ms) or
      'semicausal' (``window - stride`` zeros first: frame ``i`` ends with
      stride ``i``, no warm-up). A layer with a time stride after the
      frontend streams only when the warm-up before it is a multiple of its
      stride: 'semicausal' makes that possible right after the frontend.
    chunk_frames: 0 computes a batch's features at once; n > 0 computes
      them for about n frames of clips at a time (whole clips, at least
      one) in a loop. Same math; on the CPU the intermediate buffers of a
      few clips stay in cache and need no fresh pages, which makes a large
      batch 2-3x faster (``benchmarks/frontend_speed.py``). The streaming
      step is unaffected.
  """

  name: str = 'frontend'
  sample_rate: int = 16000
  window_size_ms: float = 40.0
  window_stride_ms: float = 20.0
  fft_length: int | None = None
  mel_num_bins: int = 40
  mel_lower_edge_hertz: float = 20.0
  mel_upper_edge_hertz: float = 7000.0
  fft_magnitude_squared: bool = False
  log_epsilon: float = 1e-12
  dct_num_features: int = 20
  preemph: float = 0.0
  window_type: str = 'hann'
  dft: str = 'fft'
  max_weight_block: int = 0
  padding: str = 'valid'
  chunk_frames: int = 0

  def __post_init__(self):
    def fail(field, expected):
      raise ValueError(f'{self.name}: {field} is {getattr(self, field)!r}, '
                       f'expected {expected}.')

    if self.sample_rate <= 0:
      fail('sample_rate', 'a positive rate in Hz')
    if self.window_samples < 2:
      fail('window_size_ms', 'a window of at least 2 samples')
    if not 1 <= self.stride_samples <= self.window_samples:
      fail('window_stride_ms',
           f'a stride of 1 to {self.window_samples} samples (the window)')
    if self.fft_length is not None and self.fft_length < self.window_samples:
      fail('fft_length', f'>= the window of {self.window_samples} samples')
    if self.mel_num_bins < 1:
      fail('mel_num_bins', 'a positive int')
    if not (0.0 <= self.mel_lower_edge_hertz < self.mel_upper_edge_hertz
            <= self.sample_rate / 2):
      fail('mel_upper_edge_hertz',
           f'0 <= mel_lower_edge_hertz ({self.mel_lower_edge_hertz}) < '
           f'mel_upper_edge_hertz <= sample_rate / 2 ({self.sample_rate / 2})')
    if not 0 <= self.dct_num_features <= self.mel_num_bins:
      fail('dct_num_features', f'0 (log-mel) to mel_num_bins '
           f'({self.mel_num_bins})')
    if self.max_weight_block < 0:
      fail('max_weight_block', '>= 0')
    if self.chunk_frames < 0:
      fail('chunk_frames', '>= 0 (0: the whole batch at once)')
    if self.log_epsilon <= 0:
      fail('log_epsilon', 'a positive float')
    if not 0.0 <= self.preemph < 1.0:
      fail('preemph', '0 <= preemph < 1')
    base.check_choice(self.name, 'window_type', self.window_type, WINDOW_TYPES)
    base.check_choice(self.name, 'padding', self.padding,
                      ('valid', 'semicausal'))
    base.check_choice(self.name, 'dft', self.dft, DFT_IMPLEMENTATIONS)

  # -- Geometry ---------------------------------------------------------------

  @property
  def fft_size(self) -> int:
    if self.fft_length is not None:
      return self.fft_length
    return 1 << (self.window_samples - 1).bit_length()

  @property
  def num_features(self) -> int:
    return self.dct_num_features or self.mel_num_bins

  @property
  def receptive_field(self) -> int:
    return self.window_samples

  def step_macs(self, in_shape: base.Shape = ()) -> int:
    """One feature frame: the DFT, the mel and the DCT projections.

    The DFT counts as a matmul for ``dft='matmul'`` and as ``N/2 log2 N``
    complex butterflies of 4 real multiply-accumulates for ``'fft'``.
    """
    self.output_shape(in_shape)
    tables = _tables(self)
    bins = tables.mel.shape[0]
    if self.dft == 'matmul':
      dft = self.window_samples * 2 * bins
    else:
      dft = int(2 * self.fft_size * math.log2(self.fft_size))
    return (dft + bins * self.mel_num_bins +
            self.mel_num_bins * self.dct_num_features)

  # -- Forms ------------------------------------------------------------------

  def apply(self, params: base.Params, audio: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    """``audio [batch, samples]`` -> ``[batch, frames, num_features]``."""
    del params, train, rng
    check_audio(self.name, audio)
    features = lambda clips: self.frame_features(self.frame(clips))
    clips = self.chunk_frames // max(self.output_length(audio.shape[1]), 1)
    if not self.chunk_frames or audio.shape[0] <= max(clips, 1):
      return features(audio)
    return map_in_chunks(features, audio, max(clips, 1))

  def init_state(self, batch_size: int, in_shape: base.Shape = (),
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return jnp.zeros((batch_size, self.window.state_frames), dtype)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    """``frame [batch, n * stride]`` new samples -> ``n`` feature frames ``[batch, n, F]``."""
    del params
    blocks = base.check_blocks(self.name, frame, self.stride_samples,
                               'audio block')
    base.check_frame(self.name, frame, (state.shape[0], frame.shape[1]),
                     state.dtype, what='audio block')
    state, window_input = self.window.stream(state, frame)
    return state, self.frame_features(
        frame_signal(window_input, blocks, self.window_samples,
                     self.stride_samples))

  # -- Pipeline ---------------------------------------------------------------

  def frame(self, audio: Array) -> Array:
    """Splits ``audio [batch, samples]`` into ``[batch, frames, window]``."""
    frames = self.output_length(audio.shape[1])
    return frame_signal(self.window.full_window(audio), frames,
                        self.window_samples, self.stride_samples)

  def frame_features(self, frames: Array) -> Array:
    """Features of windows ``[batch, frames, window]`` -> ``[batch, frames, F]``."""
    tables = _tables(self)
    dtype = frames.dtype  # float32 usually; float64 under jax_enable_x64
    if self.dft == 'matmul':
      spectrum = self._matmul(frames, tables.dft.astype(dtype))
      half = spectrum.shape[-1] // 2
      real, imag = spectrum[..., :half], spectrum[..., half:]
    else:
      frames = _preemphasis(frames, self.preemph) * tables.window.astype(dtype)
      spectrum = jnp.fft.rfft(frames, n=self.fft_size)
      # Slice after splitting: TFLite cannot slice complex tensors.
      real = jnp.real(spectrum)[..., tables.bins]
      imag = jnp.imag(spectrum)[..., tables.bins]
    power = real * real + imag * imag
    if self.fft_magnitude_squared:
      magnitude = power
    else:
      # The floor keeps the gradient finite on silent frames; it is far below
      # any log_epsilon and does not change the features.
      magnitude = jnp.sqrt(jnp.maximum(power, jnp.finfo(power.dtype).tiny))
    mel = self._matmul(magnitude, tables.mel.astype(dtype))
    log_mel = jnp.log(jnp.maximum(mel, self.log_epsilon))
    features = (self._matmul(log_mel, tables.dct.astype(dtype))
                if self.dct_num_features else log_mel)
    return features + _non_finite_to_nan(frames)

  def _matmul(self, x: Array, matrix: np.ndarray) -> Array:
    return blocked_matmul(x, matrix, self.max_weight_block)


def map_in_chunks(fn, x: Array, rows: int) -> Array:
  """``fn(x)`` computed ``rows`` rows of ``x`` at a time (``lax.map``).

  ``x``'s batch is padded with zero rows to a multiple of ``rows``; their
  outputs are dropped. ``fn`` must treat rows independently.
  """
  batch = x.shape[0]
  chunks = -(-batch // rows)
  padded = jnp.pad(x, ((0, chunks * rows - batch),) + ((0, 0),) * (x.ndim - 1))
  out = jax.lax.map(fn, padded.reshape(chunks, rows, *x.shape[1:]))
  return out.reshape(chunks * rows, *out.shape[2:])[:batch]


def _non_finite_to_nan(frames: Array) -> Array:
  """``[..., window]`` -> ``[..., 1]``: 0 where a window is finite, else NaN.

  Added to the features, it makes a window with a NaN or infinite sample give
  NaN features whatever the compiler does with ``maximum(NaN, x)`` (XLA
  propagates the NaN; YNNPACK's fused kernels return ``x``, which would turn
  a broken input into plausible features). ``s - s`` is 0 for a finite sum
  and NaN for an infinite or NaN one; it needs no NaN constant, which keeps
  quantized exports simple.
  """
  total = jnp.sum(frames, axis=-1, keepdims=True)
  return total - total


def frame_signal(audio: Array, frames: int, window: int, stride: int) -> Array:
  """The first ``frames`` windows of ``audio [batch, samples]``: ``[batch, frames, window]``.

  As ``tf.signal.frame`` without padding, built from reshapes and strided
  slices only (no gather), which keeps the exported graph simple.
  """
  grain = math.gcd(window, stride)
  used = (frames - 1) * stride + window
  grains = audio[:, :used].reshape(audio.shape[0], used // grain, grain)
  hop = stride // grain
  parts = [grains[:, i:i + (frames - 1) * hop + 1:hop]
           for i in range(window // grain)]
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def blocked_matmul(x: Array, matrix: np.ndarray, max_block: int = 0) -> Array:
  """``x @ matrix``, in row blocks of at most ``max_block`` entries (0: at once).

  Same math; TFLite's weight quantizer leaves constant matrices under 1024
  entries in float, so blocks of 1023 keep a frontend exact in quantized
  exports.
  """
  rows = matrix.shape[0]
  if not max_block or matrix.size <= max_block:
    return jnp.matmul(x, matrix)
  step = max(1, max_block // matrix.shape[1])
  return sum(jnp.matmul(x[..., i:i + step], matrix[i:i + step])
             for i in range(0, rows, step))


@dataclasses.dataclass(frozen=True)
class _Tables:
  """Constant float64 matrices of a frontend, cast to the input's dtype at trace time."""

  window: np.ndarray  # [window]
  bins: slice  # spectrogram bins with a non-zero mel weight
  dft: np.ndarray | None  # [window, 2 * bins]: real then imaginary parts
  mel: np.ndarray  # [bins, mel_num_bins]
  dct: np.ndarray  # [mel_num_bins, dct_num_features]


@functools.lru_cache(maxsize=32)
def _tables(frontend: MfccFrontend) -> _Tables:
  window = window_function(frontend.window_type, frontend.window_samples)
  mel = linear_to_mel_weight_matrix(
      frontend.mel_num_bins, frontend.fft_size // 2 + 1, frontend.sample_rate,
      frontend.mel_lower_edge_hertz, frontend.mel_upper_edge_hertz)
  used = np.flatnonzero(mel.any(axis=1))
  if used.size == 0:
    raise ValueError(
        f'{frontend.name}: no DFT bin falls inside the mel filters '
        f'({frontend.mel_lower_edge_hertz}-{frontend.mel_upper_edge_hertz} '
        f'Hz); use a larger fft_length or wider mel edges.')
  bins = slice(int(used[0]), int(used[-1]) + 1)
  dft = None
  if frontend.dft == 'matmul':
    n = np.arange(frontend.window_samples)[:, None]
    k = np.arange(bins.start, bins.stop)[None, :]
    angle = 2.0 * np.pi * ((n * k) % frontend.fft_size) / frontend.fft_size
    # Linear pre-processing folded into the DFT: x -> preemph -> window -> DFT.
    linear = preemphasis_matrix(frontend.window_samples, frontend.preemph)
    linear = linear * window[None, :]
    dft = linear @ np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
  return _Tables(window=window, bins=bins, dft=dft, mel=mel[bins],
                 dct=dct_matrix(frontend.mel_num_bins,
                                frontend.dct_num_features))


def window_function(window_type: str, length: int) -> np.ndarray:
  """Analysis window of ``length`` samples (float64)."""
  n = np.arange(length)
  if window_type == 'hann':  # periodic, as tf.signal.hann_window
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)
  if window_type == 'hann_offset':
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * (n + 0.5) / length)
  return np.ones(length)


def hertz_to_mel(hertz: np.ndarray) -> np.ndarray:
  """HTK mel scale, as tf.signal."""
  return 1127.0 * np.log1p(np.asarray(hertz) / 700.0)


def linear_to_mel_weight_matrix(num_mel_bins: int, num_spectrogram_bins: int,
                                sample_rate: float, lower_edge_hertz: float,
                                upper_edge_hertz: float) -> np.ndarray:
  """``[num_spectrogram_bins, num_mel_bins]`` triangular filters (float64).

  Same definition as ``tf.signal.linear_to_mel_weight_matrix``: bins are
  spaced evenly from 0 to Nyquist, the DC bin gets no weight, and band edges
  are evenly spaced on the HTK mel scale.
  """
  linear_hz = np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins)[1:]
  spectrogram_mel = hertz_to_mel(linear_hz)[:, None]
  edges = np.linspace(hertz_to_mel(lower_edge_hertz),
                      hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
  lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (spectrogram_mel - lower) / (center - lower)
  falling = (upper - spectrogram_mel) / (upper - center)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  return np.pad(weights, ((1, 0), (0, 0)))


def dct_matrix(num_inputs: int, num_outputs: int) -> np.ndarray:
  """``[num_inputs, num_outputs]``: DCT-II scaled as ``mfccs_from_log_mel_spectrograms``."""
  n = np.arange(num_inputs)[:, None]
  k = np.arange(num_outputs)[None, :]
  return 2.0 * np.cos(np.pi * (2 * n + 1) * k / (2.0 * num_inputs)) / np.sqrt(
      2.0 * num_inputs)


def preemphasis_matrix(length: int, coefficient: float) -> np.ndarray:
  """``A`` with ``frame @ A`` = kws_streaming's per-frame pre-emphasis."""
  matrix = np.eye(length)
  matrix[0, 0] = 1.0 - coefficient
  matrix[np.arange(length - 1), np.arange(1, length)] = -coefficient
  return matrix


def _preemphasis(frames: Array, coefficient: float) -> Array:
  if coefficient == 0.0:
    return frames
  return jnp.concatenate(
      [frames[..., :1] * (1.0 - coefficient),
       frames[..., 1:] - coefficient * frames[..., :-1]], axis=-1)


def check_audio(name: str, audio: Array) -> None:
  """Raises a ValueError naming the layer unless audio is float ``[batch, samples]``."""
  if audio.ndim != 2:
    raise ValueError(
        f'{name}: audio has shape {tuple(audio.shape)}, expected '
        '[batch, samples].')
  base.check_floating(name, audio, 'audio')
