"""TensorFlow Lite Micro's audio frontend in pure JAX, as a streaming layer.

``MicroFrontend`` computes what TFLM's ``FrontendProcessSamples`` (and the
TensorFlow op ``audio_microfrontend`` built on it) computes, stage by stage
in the same integer arithmetic:

1. window: int16 samples times a Hann window of int16 coefficients
   (12 fractional bits, the half-sample shifted Hann), ``>> 12``; the frame
   is then shifted up by ``15 - msb(max |x|)`` bits for the FFT;
2. FFT: kissfft's 16-bit fixed-point real FFT (radix-4 and radix-2 stages
   that divide by the radix with rounding at every stage), emulated exactly:
   int16 arrays whose additions wrap as C's int16 stores do, products in
   int32 with kissfft's rounding (no float FFT anywhere);
3. filterbank: ``re^2 + im^2`` per bin, triangular mel channels with 12-bit
   weights accumulated in 64 bits, the rounded integer square root
   (TFLM's ``Sqrt32``/``Sqrt64``, off-by-one cap included) and the FFT's
   shift undone;
4. noise reduction: a per-channel noise estimate smoothed with
   ``even_smoothing`` / ``odd_smoothing`` (14 fractional bits) subtracted
   from the signal scaled up by ``smoothing_bits``, keeping at least
   ``min_signal_remaining`` of it;
5. PCAN gain control (``enable_pcan``): the gain of the noise estimate from
   TFLM's piecewise-quadratic lookup table, then the shrink function;
6. log scale (``enable_log``): TFLM's integer log (log2 with a 129-entry
   correction table, times ln 2), scaled by ``2**scale_shift``, capped at
   65535.

Where the C code uses uint64 (the noise estimate update, the PCAN gain, the
log coefficient) products and sums are carried exactly in pairs of uint32
words; nothing needs JAX's x64 mode. The filterbank's 64-bit sums are a
float32 matmul of energy limbs by 6-bit weight parts whose sums stay below
2**24, where float32 is exact (``_filterbank_matrix``), then carried into
64 bits. The integer square root starts from a float32 estimate that one
Newton step on the exact residual and +-1 corrections make exact. Nothing
is approximated.

Agreement with the TensorFlow 2.21 op: bit-exact, 0 units of difference and
100% equal values on everything measured (939,000 values of 10 settings:
30/25/8/64 ms windows, 10/20/4/32 ms steps, 8 and 16 kHz, 8 to 64 channels,
PCAN and the log on and off, other smoothing, gain and scale settings; full
window and streamed), on eSpeak NG speech, numpy speech-like signals,
noise, tones and chirps from -90 dBFS to full scale, silence, DC and square
waves at the int16 limits. tests/test_micro_frontend.py asserts that
tolerance (max difference 0, 100% equal) on 6 settings. Two corners are
not emulated: a bin with ``re = im = -32768`` (energy 2**31, which the C
code reads back as a negative int32) and samples at exactly +1.0, which
saturate to 32767 here where ``tf.cast`` wraps them to -32768.

Speed (2 shared CPU cores, jitted ``apply`` on 100 one-second clips, best
of 10): 80-100 ms at 10 ms steps and 25-35 ms at 20 ms steps, next to
40-90 ms and 20-50 ms for the TF op (C) on the same clips; a streaming step
at batch 1 takes about 30 us.

Input and output: float audio ``[batch, samples]`` in [-1, 1) becomes int16
as kws_streaming's 'micro' preprocessing does (``int16(audio * 32768)``,
truncated toward zero; saturated here at the int16 limits). Features
``[batch, frames, num_channels]`` are the op's raw output (``out_scale=1``:
what TFLM gives on the device as uint16, 0..65535) times ``out_scale``,
10/256 by default: the factor kws_streaming's 'micro' features and
microWakeWord (0.0390625) train on. ``out_scale=1`` gives the raw units.
Audio with a NaN or infinite sample gives NaN features for the windows that
hold it (the noise estimate after it is then meaningless).

Streaming: a step takes ``stride`` new samples (``[batch, stride]``) and
returns one feature frame ``[batch, 1, num_channels]``. The state is
``{'samples': [batch, window - stride] float, 'noise': [batch, channels]
uint32, 'frames': [batch] int32}``: the latest past samples, TFLM's noise
estimate and the number of frames emitted (saturated at ``lookback``). The
noise estimate is recursive over frames, so the full-window form is a
``lax.scan`` over frames too and ``receptive_field`` is infinite. With
'valid' padding a stream first emits ``lookback`` warm-up frames (2 for
30 ms / 10 ms), computed on the zero state; they leave the noise estimate
alone, so the frames after them equal the op's frames exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kws_jax.frontend import FramedAudio, check_audio, frame_signal
from kws_jax.layers import base

Array = jax.Array
U64 = tuple[Array, Array]  # (high word, low word), both uint32

# Fixed-point formats of TFLM's microfrontend library.
WINDOW_BITS = 12
FILTERBANK_BITS = 12
NOISE_REDUCTION_BITS = 14
PCAN_SNR_BITS = 12
PCAN_OUTPUT_BITS = 6
WIDE_DYNAMIC_BITS = 32
LOG_SCALE_BITS = 16
LOG_SEGMENTS_BITS = 7
LOG_COEFF = round(math.log(2.0) * (1 << LOG_SCALE_BITS))  # 45426
UINT16_MAX = 0xFFFF

# kws_streaming's 'micro' features: the op's output times 10 / 256.
KWS_STREAMING_SCALE = 10.0 / 256.0


@dataclasses.dataclass(frozen=True)
class MicroFrontend(FramedAudio, base.Layer):
  """Audio ``[batch, samples]`` -> TFLM features ``[batch, frames, num_channels]``.

  Attributes (the op's attributes, under its names where it has them):
    sample_rate: of the input audio, Hz.
    window_size_ms, window_stride_ms: frame length and hop, whole
      milliseconds that are whole numbers of samples.
    num_channels: filterbank channels (features per frame).
    lower_band_limit, upper_band_limit: band of the filterbank, Hz.
    smoothing_bits: the signal is scaled up by ``2**smoothing_bits`` before
      the noise estimate is subtracted.
    even_smoothing, odd_smoothing: noise estimate smoothing of even and odd
      channels (0..1).
    min_signal_remaining: fraction of the signal that noise reduction keeps.
    enable_pcan, pcan_strength, pcan_offset, gain_bits: PCAN gain control.
    enable_log, scale_shift: log scale, times ``2**scale_shift``.
    out_scale: features = the op's uint16 output times this (10/256, as
      kws_streaming; 1.0 for raw units). The op's own ``out_scale`` divides
      by an integer; it is 1 here.
    padding: 'valid' (the op's framing: frame ``i`` covers samples
      ``[i s, i s + window)``) or 'semicausal' (``window - stride`` zeros
      first: frame ``i`` ends with stride ``i``, no warm-up frames; the
      zeros count as audio for the noise estimate).
  """

  name: str = 'frontend'
  sample_rate: int = 16000
  window_size_ms: float = 30.0
  window_stride_ms: float = 10.0
  num_channels: int = 40
  lower_band_limit: float = 125.0
  upper_band_limit: float = 7500.0
  smoothing_bits: int = 10
  even_smoothing: float = 0.025
  odd_smoothing: float = 0.06
  min_signal_remaining: float = 0.05
  enable_pcan: bool = True
  pcan_strength: float = 0.95
  pcan_offset: float = 80.0
  gain_bits: int = 21
  enable_log: bool = True
  scale_shift: int = 6
  out_scale: float = KWS_STREAMING_SCALE
  padding: str = 'valid'

  def __post_init__(self):
    _check_settings(self)
    _ = _tables(self)  # builds the filterbank: checks that it fits

  # -- Geometry ---------------------------------------------------------------

  @property
  def window_samples(self) -> int:
    """Truncated, as TFLM's frontend counts them (MFCC rounds)."""
    return _samples(self.sample_rate, self.window_size_ms)

  @property
  def stride_samples(self) -> int:
    return _samples(self.sample_rate, self.window_stride_ms)

  @property
  def fft_size(self) -> int:
    """The next power of two >= the window (kissfft's real FFT size)."""
    return 1 << (self.window_samples - 1).bit_length()

  @property
  def correction_bits(self) -> int:
    """TFLM's ``input_correction_bits``: ``log2(fft_size) - 6``."""
    return self.fft_size.bit_length() - 1 - FILTERBANK_BITS // 2

  @property
  def num_features(self) -> int:
    return self.num_channels

  @property
  def receptive_field(self) -> float:
    return math.inf  # the noise estimate remembers every frame

  @property
  def float_scopes(self) -> tuple[str, ...]:
    """Scopes a full-int8 export keeps out of int8: this whole layer."""
    return (self.name,)

  def step_macs(self, in_shape: base.Shape = ()) -> int:
    """Integer multiplies of one frame: window, FFT, filterbank (approximate)."""
    self.output_shape(in_shape)
    n = self.fft_size
    filterbank = 2 * int(np.count_nonzero(_tables(self).filterbank))
    return self.window_samples + 2 * n * (n.bit_length() - 1) + filterbank

  # -- Forms ------------------------------------------------------------------

  def apply(self, params: base.Params, audio: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    """``audio [batch, samples]`` -> ``[batch, frames, num_channels]``."""
    del params, train, rng
    check_audio(self.name, audio)
    samples, broken = self.frame(self.window.full_window(audio),
                                 self.output_length(audio.shape[1]))
    noise = jnp.zeros((audio.shape[0], self.num_channels), jnp.uint32)
    _, features = self.features(self.filterbank(samples), noise)
    return self._scale(features, broken)

  def init_state(self, batch_size: int, in_shape: base.Shape = (),
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return {
        'samples': jnp.zeros((batch_size, self.window.state_frames), dtype),
        'noise': jnp.zeros((batch_size, self.num_channels), jnp.uint32),
        'frames': jnp.zeros((batch_size,), jnp.int32),
    }

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    """``frame [batch, n * stride]`` new samples -> ``n`` frames ``[batch, n, C]``."""
    del params
    blocks = base.check_blocks(self.name, frame, self.stride_samples,
                               'audio block')
    self._check_state(state, frame)
    samples, window_input = self.window.stream(state['samples'], frame)
    frames, broken = self.frame(window_input, blocks)
    # Warm-up frames (no counterpart in the op) leave the estimate alone.
    emitted = state['frames'][:, None] + jnp.arange(blocks, dtype=jnp.int32)
    noise, features = self.features(self.filterbank(frames), state['noise'],
                                    emitted >= self.lookback)
    count = jnp.minimum(state['frames'] + blocks, self.lookback)
    new_state = {'samples': samples, 'noise': noise,
                 'frames': count.astype(jnp.int32)}
    return new_state, self._scale(features, broken)

  def _check_state(self, state: Any, frame: Array) -> None:
    if not isinstance(state, dict) or set(state) != {'samples', 'noise',
                                                     'frames'}:
      raise ValueError(f'{self.name}: state must be the dict init_state '
                       "returns ('samples', 'noise', 'frames').")
    batch = state['samples'].shape[0]
    base.check_frame(self.name, frame, (batch, frame.shape[1]),
                     state['samples'].dtype, what='audio block')
    base.check_frame(self.name, state['noise'], (batch, self.num_channels),
                     jnp.uint32, what="state['noise']")
    base.check_frame(self.name, state['frames'], (batch,), jnp.int32,
                     what="state['frames']")

  @property
  def _dsp(self) -> MicroFrontend:
    """This frontend without the settings stages 1-6 ignore: one compiled
    program for frontends that differ only in name, padding or out_scale."""
    return dataclasses.replace(self, name='frontend', padding='valid',
                               out_scale=1.0)

  def _scale(self, features: Array, broken: Array) -> Array:
    """uint16-valued features as floats times ``out_scale``, NaN where broken."""
    return features.astype(broken.dtype) * self.out_scale + broken

  # -- Pipeline ---------------------------------------------------------------

  def frame(self, audio: Array, count: int) -> tuple[Array, Array]:
    """The first ``count`` windows of ``audio [batch, samples]`` (placed by the caller).

    Returns int16 sample values ``[batch, count, window]`` (int32) and
    ``[batch, count, 1]`` in the audio's dtype: 0, or NaN where a window
    holds a NaN or infinite sample. The samples become int16 before framing,
    once each; the NaN test sums grains of ``gcd(window, stride)`` samples.
    """
    window, stride = self.window_samples, self.stride_samples
    audio = audio[:, :(count - 1) * stride + window]
    samples = frame_signal(to_int16(audio), count, window, stride)
    grain = math.gcd(window, stride)
    broken = jnp.sum((audio - audio).reshape(audio.shape[0], -1, grain), -1)
    broken = frame_signal(broken, count, window // grain, stride // grain)
    return samples, jnp.sum(broken, axis=-1, keepdims=True)

  def filterbank(self, samples: Array) -> Array:
    """int16 windows ``[batch, frames, window]`` -> filterbank ``[batch, frames, C]`` uint32.

    Stages 1-3 (window, FFT, square-root filterbank), per frame. Inside,
    the frames lie on the last axis, so that the integer FFT's stages
    vectorize over them.
    """
    return _filterbank(self._dsp, samples)

  def features(self, signal: Array, noise: Array,
               update: Array | None = None) -> tuple[Array, Array]:
    """Stages 4-6 over frames: ``(noise [batch, C], features [batch, frames, C])``.

    Args:
      signal: filterbank ``[batch, frames, C]`` uint32.
      noise: the noise estimate before the first frame, ``[batch, C]`` uint32.
      update: ``[batch, frames]`` bool, whether a frame updates the estimate
        (None: every frame does).

    Returns:
      The estimate after the last frame and the uint16-valued features
      (int32).
    """
    return _features(self._dsp, signal, noise, update)


# The stages are jitted on their own (inlined under an outer jit), so that
# an eager step compiles two programs instead of hundreds of small ops.


@functools.partial(jax.jit, static_argnums=0)
def _filterbank(frontend: MicroFrontend, samples: Array) -> Array:
  tables = _tables(frontend)
  lead = samples.shape[:-1]
  samples = samples.reshape(-1, frontend.window_samples)
  windowed, shift = _apply_window(samples, tables.window)
  fft_input = jnp.left_shift(windowed, shift[:, None]).astype(jnp.int16)
  fft_input = jnp.pad(fft_input.T, [
      (0, frontend.fft_size - frontend.window_samples), (0, 0)])
  real, imag = _kiss_fftr(fft_input, tables)  # [bins, M] int16
  real, imag = real.astype(jnp.int32), imag.astype(jnp.int32)
  energy = (real * real).astype(jnp.uint32) + (imag * imag).astype(
      jnp.uint32)
  root = _isqrt_rounded(*_accumulate(energy, tables))  # [M, C]
  root = jnp.right_shift(root, shift.astype(jnp.uint32)[:, None])
  return root.reshape(*lead, frontend.num_channels)


@functools.partial(jax.jit, static_argnums=0)
def _features(frontend: MicroFrontend, signal: Array, noise: Array,
              update: Array | None) -> tuple[Array, Array]:
  tables = _tables(frontend)
  scaled = jnp.left_shift(signal, np.uint32(frontend.smoothing_bits))
  noise, estimates = _noise_estimates(scaled, noise, tables.smoothing,
                                      update)
  reduced = _reduce_noise(signal, scaled, estimates, frontend.smoothing_bits,
                          tables.min_signal)
  if frontend.enable_pcan:
    reduced = _pcan(reduced, estimates, tables.gain_lut, tables.snr_shift)
  if frontend.enable_log:
    out = _log_scale(reduced, frontend.correction_bits, frontend.scale_shift,
                     tables.log_lut)
  else:
    out = jnp.minimum(reduced, np.uint32(UINT16_MAX))
  return noise, out.astype(jnp.int32)


def micro_frontend_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The ``frontend`` section of a micro-frontend model: name 'micro' and the
  fields of ``MicroFrontend`` (its defaults, then ``overrides``).

  ``sample_rate`` comes from ``config.data``; ``name`` picks the frontend.
  """
  defaults = MicroFrontend()
  section = {'name': 'micro'}
  for field in dataclasses.fields(MicroFrontend):
    if field.name not in ('name', 'sample_rate'):
      section[field.name] = getattr(defaults, field.name)
  unknown = sorted(set(overrides) - set(section))
  if unknown:
    raise ValueError(f'micro_frontend_config(): {unknown[0]} is not a field '
                     f'of MicroFrontend; its fields are '
                     f'{", ".join(sorted(section))}.')
  section.update(overrides)
  return ml_collections.ConfigDict(section)


def to_int16(audio: Array) -> Array:
  """Float audio in [-1, 1) -> int16 sample values (int32): ``trunc(x 32768)``.

  kws_streaming's ``tf.cast(audio * 32768, tf.int16)``; values outside the
  int16 range saturate (``tf.cast`` wraps them) and non-finite samples are 0
  (the features of their windows are NaN, see ``MicroFrontend._scale``).
  """
  scaled = jnp.where(jnp.isfinite(audio), audio * 32768.0, 0.0)
  return jnp.clip(jnp.trunc(scaled), -32768.0, 32767.0).astype(jnp.int32)


# -- Settings -----------------------------------------------------------------


def _samples(sample_rate: int, ms: float) -> int:
  return int(sample_rate * ms) // 1000


def _check_settings(frontend: MicroFrontend) -> None:
  """Raises a ValueError naming the field for settings the op cannot run."""
  name = frontend.name

  def fail(field: str, expected: str):
    raise ValueError(f'{name}: {field} is {getattr(frontend, field)!r}, '
                     f'expected {expected}.')

  def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, bool)

  base.check_positive_int(name, 'sample_rate', frontend.sample_rate)
  for field in ('window_size_ms', 'window_stride_ms'):
    ms = getattr(frontend, field)
    if (not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms <= 0
        or ms != int(ms)):
      fail(field, 'a positive whole number of milliseconds (the op takes '
           'integer ms)')
    if int(ms) * frontend.sample_rate % 1000:
      fail(field, f'a duration that is a whole number of samples at '
           f'{frontend.sample_rate} Hz')
  window, stride = frontend.window_samples, frontend.stride_samples
  if window < 4:
    fail('window_size_ms', 'a window of at least 4 samples')
  if stride > window:
    fail('window_stride_ms', f'at most the window ({frontend.window_size_ms:g}'
         ' ms)')
  bins = frontend.fft_size // 2 + 1
  if not is_int(frontend.num_channels) or not 1 <= frontend.num_channels < bins:
    fail('num_channels', f'an int from 1 to {bins - 1} (the FFT of '
         f'{frontend.fft_size} has {bins} bins)')
  nyquist = frontend.sample_rate / 2
  if not 0.0 <= frontend.lower_band_limit < frontend.upper_band_limit:
    fail('lower_band_limit', f'0 <= lower_band_limit < upper_band_limit '
         f'({frontend.upper_band_limit})')
  if frontend.upper_band_limit > nyquist:
    fail('upper_band_limit', f'at most the Nyquist frequency ({nyquist:g} '
         'Hz)')
  if not (is_int(frontend.smoothing_bits) and
          0 <= frontend.smoothing_bits < 32):
    fail('smoothing_bits', 'an int from 0 to 31')
  for field in ('even_smoothing', 'odd_smoothing', 'min_signal_remaining'):
    if not 0.0 <= getattr(frontend, field) <= 1.0:
      fail(field, 'a fraction from 0 to 1')
  for field in ('enable_pcan', 'enable_log'):
    if getattr(frontend, field) not in (True, False):
      fail(field, 'a bool')
  if frontend.enable_pcan:
    if frontend.pcan_strength < 0:
      fail('pcan_strength', '>= 0')
    if frontend.pcan_offset <= 0:
      fail('pcan_offset', 'a positive offset')
    input_bits = frontend.smoothing_bits - frontend.correction_bits
    if not 0 <= input_bits < 32:
      fail('smoothing_bits', f'{frontend.correction_bits} to '
           f'{31 + frontend.correction_bits} with PCAN at this FFT size '
           f'({frontend.fft_size})')
    snr_shift = (frontend.gain_bits - frontend.correction_bits -
                 PCAN_SNR_BITS)
    low = frontend.correction_bits + PCAN_SNR_BITS
    if not is_int(frontend.gain_bits) or not 0 <= snr_shift < 32 or (
        frontend.gain_bits > 31):
      fail('gain_bits', f'an int from {low} to {min(31, low + 31)} at this FFT '
           f'size ({frontend.fft_size})')
  if not is_int(frontend.scale_shift) or not 0 <= frontend.scale_shift <= 11:
    fail('scale_shift', 'an int from 0 to 11 (more overflows the 32-bit log)')
  if not frontend.out_scale > 0:
    fail('out_scale', 'a positive factor')
  base.check_choice(name, 'padding', frontend.padding, ('valid', 'semicausal'))


# -- Constant tables (numpy, built once per configuration) --------------------


@dataclasses.dataclass(frozen=True)
class _Tables:
  """Integer constants of one configuration, as TFLM's ``*PopulateState`` makes them."""

  window: np.ndarray  # [window] int32: Hann coefficients, 12 bits
  factors: tuple[int, ...]  # kissfft's radices of the complex FFT
  twiddles: np.ndarray  # [2, fft_size / 2] int32: real, imaginary
  super_twiddles: np.ndarray  # [2, fft_size / 4] int32: of the real FFT
  filterbank: np.ndarray  # [bins, C] int64: 12-bit weights of the channels
  first_bin: int  # bins [first_bin, first_bin + len(matrix)) carry weight
  matrix: np.ndarray  # [used bins, 2 C] float32: weights mod 64, weights / 64
  limb_bits: int  # energy limbs of this many bits keep the sums exact
  smoothing: np.ndarray  # [C] uint32: even/odd smoothing, 14 bits
  min_signal: int  # min_signal_remaining, 14 bits
  gain_lut: np.ndarray  # [125] int32: PCAN's piecewise-quadratic gain
  snr_shift: int
  log_lut: np.ndarray  # [130] int32: log2(1 + x) - x, 16 bits


@functools.lru_cache(maxsize=32)
def _tables(frontend: MicroFrontend) -> _Tables:
  filterbank = _filterbank_weights(frontend)
  first_bin, matrix, limb_bits = _filterbank_matrix(frontend, filterbank)
  ncfft = frontend.fft_size // 2
  nr = 1 << NOISE_REDUCTION_BITS
  even = int(np.float32(frontend.even_smoothing) * np.float32(nr))
  odd = int(np.float32(frontend.odd_smoothing) * np.float32(nr))
  return _Tables(
      window=_window_coefficients(frontend.window_samples),
      factors=_kiss_factors(ncfft),
      twiddles=_cexp(-2.0 * np.pi * np.arange(ncfft) / ncfft),
      super_twiddles=_cexp(-np.pi * ((np.arange(ncfft // 2) + 1) / ncfft +
                                     0.5)),
      filterbank=filterbank, first_bin=first_bin, matrix=matrix,
      limb_bits=limb_bits,
      smoothing=np.where(np.arange(frontend.num_channels) % 2 == 0, even,
                         odd).astype(np.uint32),
      min_signal=int(np.float32(frontend.min_signal_remaining) *
                     np.float32(nr)),
      gain_lut=_pcan_gain_lut(frontend),
      snr_shift=frontend.gain_bits - frontend.correction_bits - PCAN_SNR_BITS,
      log_lut=_log_lut())


def _window_coefficients(size: int) -> np.ndarray:
  """TFLM's Hann window, half-sample shifted, rounded to 12 bits (float32 math)."""
  arg = np.float32(2.0 * np.pi / np.float32(size))
  value = (0.5 - 0.5 * np.cos(np.float64(arg) * (np.arange(size) + 0.5))
           ).astype(np.float32)
  return np.floor(np.float64(value) * (1 << WINDOW_BITS) + 0.5).astype(
      np.int32)


def _kiss_factors(n: int) -> tuple[int, ...]:
  """kissfft's factorization of a power of two: radix 4 first, then 2."""
  factors = []
  while n > 1:
    radix = 4 if n % 4 == 0 else 2
    factors.append(radix)
    n //= radix
  return tuple(factors)


def _cexp(phase: np.ndarray) -> np.ndarray:
  """kissfft's fixed-point twiddles: ``floor(0.5 + 32767 (cos, sin))``."""
  return np.stack([np.floor(0.5 + 32767 * np.cos(phase)),
                   np.floor(0.5 + 32767 * np.sin(phase))]).astype(np.int32)


def _freq_to_mel(freq: np.float32) -> np.float32:
  return np.float32(1127.0 * np.log1p(np.float64(freq) / 700.0))


def _filterbank_weights(frontend: MicroFrontend) -> np.ndarray:
  """``[bins, C]``: the 12-bit weight of each FFT bin in each channel.

  As ``FilterbankPopulateState`` (its float32 arithmetic): ``C + 1`` bands
  between mel-spaced centres; output channel ``j`` takes the rising
  "unweights" of band ``j`` and the falling weights of band ``j + 1``.
  """
  f32 = np.float32
  channels = frontend.num_channels
  spectrum = frontend.fft_size // 2 + 1
  mel_low = _freq_to_mel(f32(frontend.lower_band_limit))
  mel_high = _freq_to_mel(f32(frontend.upper_band_limit))
  spacing = f32(f32(mel_high - mel_low) / f32(channels + 1))
  centers = [f32(mel_low + f32(spacing * f32(i + 1)))
             for i in range(channels + 1)]
  hz_per_bin = f32(0.5 * frontend.sample_rate / np.float64(
      f32(spectrum) - f32(1)))
  start = int(1.5 + np.float64(f32(f32(frontend.lower_band_limit) /
                                   hz_per_bin)))
  entries = [[] for _ in range(channels)]  # (bin, weight) per output channel
  for band, center in enumerate(centers):
    freq = start
    while _freq_to_mel(f32(f32(freq) * hz_per_bin)) <= center:
      freq += 1
      if freq >= spectrum:
        raise ValueError(
            f'{frontend.name}: upper_band_limit is '
            f'{frontend.upper_band_limit!r}, expected a band whose filters '
            f'end below the last FFT bin ({spectrum - 1}); lower it or use '
            'fewer channels.')
    previous = mel_low if band == 0 else centers[band - 1]
    for b in range(start, freq):
      weight = f32(f32(center - _freq_to_mel(f32(f32(b) * hz_per_bin))) /
                   f32(center - previous))
      if band < channels:  # rising part of channel `band`
        entries[band].append(
            (b, int(np.floor((1.0 - np.float64(weight)) *
                             (1 << FILTERBANK_BITS) + 0.5))))
      if band > 0:  # falling part of channel `band - 1`
        entries[band - 1].append(
            (b, int(np.floor(np.float64(f32(weight * f32(
                1 << FILTERBANK_BITS))) + 0.5))))
    start = freq
  weights = np.zeros((spectrum, channels), np.int64)
  for c, pairs in enumerate(entries):
    for b, w in pairs:
      weights[b, c] = w
  return weights


def _filterbank_matrix(frontend: MicroFrontend, weights: np.ndarray
                       ) -> tuple[int, np.ndarray, int]:
  """The filterbank as a float32 matmul that is exact.

  A weight (<= 2**12) splits into 6-bit parts and an energy (< 2**32) into
  limbs of ``limb_bits``, chosen so that a channel's sum of part-times-limb
  products stays below 2**24, where float32 counts every integer. Returns
  ``(first_bin, matrix [used bins, 2 C], limb_bits)``.
  """
  used = np.flatnonzero(weights.any(axis=1))
  if used.size == 0:
    raise ValueError(
        f'{frontend.name}: no FFT bin falls inside the filterbank '
        f'({frontend.lower_band_limit:g}-{frontend.upper_band_limit:g} Hz); '
        'widen the band or use a longer window.')
  terms = int(np.count_nonzero(weights, axis=0).max())
  limb_bits = min(16, int(np.floor(np.log2((2**24 - 1) / (64 * terms)))))
  if limb_bits < 4:
    raise ValueError(
        f'{frontend.name}: num_channels is {frontend.num_channels}, expected '
        f'more channels: one channel sums {terms} FFT bins, too many to sum '
        'exactly.')
  block = weights[used[0]:used[-1] + 1]
  matrix = np.concatenate([block % 64, block // 64], axis=1)
  return int(used[0]), matrix.astype(np.float32), limb_bits


def _pcan_gain_lut(frontend: MicroFrontend) -> np.ndarray:
  """PCAN's gain table: ``y0, a1, a2`` of a quadratic per octave of the estimate.

  As ``PcanGainControlPopulateState``; the gain of estimate ``x`` is
  ``2**gain_bits (x / 2**input_bits + offset)**-strength`` in float32.
  """
  f32 = np.float32
  input_bits = frontend.smoothing_bits - frontend.correction_bits

  def gain(x: int) -> int:
    x_float = f32(f32(x) / f32(1 << input_bits))
    value = f32(f32(1 << frontend.gain_bits) * np.power(
        f32(x_float + f32(frontend.pcan_offset)), f32(-frontend.pcan_strength)))
    return 0x7FFF if value > 0x7FFF else int(f32(value + f32(0.5)))

  lut = np.zeros(4 * WIDE_DYNAMIC_BITS - 3, np.int64)
  lut[0], lut[1] = gain(0), gain(1)
  for interval in range(2, WIDE_DYNAMIC_BITS + 1):
    x0 = 1 << (interval - 1)
    x1 = x0 + (x0 >> 1)
    x2 = x0 + (x0 - 1) if interval == WIDE_DYNAMIC_BITS else 2 * x0
    y0, y1, y2 = gain(x0), gain(x1), gain(x2)
    a1 = 4 * (y1 - y0) - (y2 - y0)
    a2 = (y2 - y0) - a1
    lut[4 * interval - 6:4 * interval - 3] = y0, a1, a2
  return ((lut + 0x8000) % 0x10000 - 0x8000).astype(np.int32)  # int16 values


def _log_lut() -> np.ndarray:
  """``round(2**16 (log2(1 + x) - x))`` at ``x = i / 128``, and a zero pad."""
  x = np.arange((1 << LOG_SEGMENTS_BITS) + 1) / (1 << LOG_SEGMENTS_BITS)
  table = np.round((np.log2(1.0 + x) - x) * (1 << LOG_SCALE_BITS))
  return np.append(table, 0).astype(np.int32)


# -- Integer helpers ----------------------------------------------------------


def _msb(x: Array) -> Array:
  """1-based index of the highest set bit of uint32 ``x`` (0 for 0), int32."""
  return (32 - jax.lax.clz(x)).astype(jnp.int32)


def _mul_u32(a: Array, b: Array | np.ndarray) -> U64:
  """Full 64-bit product of uint32 ``a`` and ``b``."""
  a_lo, a_hi = a & 0xFFFF, a >> 16
  b_lo, b_hi = jnp.asarray(b, jnp.uint32) & 0xFFFF, jnp.asarray(
      b, jnp.uint32) >> 16
  low = a_lo * b_lo
  mid = a_lo * b_hi
  mid2 = mid + a_hi * b_lo
  mid_carry = (mid2 < mid).astype(jnp.uint32)
  lo = low + (mid2 << 16)
  hi = a_hi * b_hi + (mid2 >> 16) + (mid_carry << 16) + (lo < low).astype(
      jnp.uint32)
  return hi, lo


def _add_u64(a: U64, b: U64) -> U64:
  lo = a[1] + b[1]
  return a[0] + b[0] + (lo < a[1]).astype(jnp.uint32), lo


def _sub_u64(a: U64, b: U64) -> U64:
  lo = a[1] - b[1]
  return a[0] - b[0] - (a[1] < b[1]).astype(jnp.uint32), lo


def _less_u64(a: U64, b: U64) -> Array:
  return (a[0] < b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))


def _shift_left_u64(x: Array, shift: int) -> U64:
  """uint32 ``x << shift`` as a 64-bit value, for a static shift of 0 to 63."""
  if shift == 0:
    return jnp.zeros_like(x), x
  if shift >= 32:
    return x << (shift - 32), jnp.zeros_like(x)
  return x >> (32 - shift), x << shift


def _shift_right_u64(a: U64, shift: int) -> U64:
  """``a >> shift`` for a static shift of 0 to 63."""
  hi, lo = a
  if shift == 0:
    return a
  if shift >= 32:
    return jnp.zeros_like(hi), hi >> (shift - 32)
  return hi >> shift, (lo >> shift) | (hi << (32 - shift))


# -- Stage 1: window ----------------------------------------------------------


def _apply_window(samples: Array, coefficients: np.ndarray
                  ) -> tuple[Array, Array]:
  """int16 values ``[M, W]`` -> windowed int16 values (int32) and the FFT's shift ``[M]``."""
  windowed = (samples * coefficients) >> WINDOW_BITS
  # |x| as C's int16 computes it: |-32768| stays -32768.
  magnitude = jnp.abs(windowed).astype(jnp.int16)
  peak = jnp.maximum(jnp.max(magnitude, axis=-1), 0).astype(jnp.uint32)
  return windowed, 15 - _msb(peak)


# -- Stage 2: kissfft's fixed-point real FFT ----------------------------------
#
# Complex values are pairs of int16 arrays ``[n, M]`` (M frames last).
# int16 + and - wrap around as C's stores into int16 do; products are taken
# in int32 and rounded back (``sround``), also wrapping.


def _round15(x: Array) -> Array:
  """kissfft's ``sround``: ``(x + 2**14) >> 15`` of an int32, stored as int16."""
  return ((x + (1 << 14)) >> 15).astype(jnp.int16)


def _cmul(ar: Array, ai: Array, br: np.ndarray, bi: np.ndarray
          ) -> tuple[Array, Array]:
  """``C_MUL`` of int16 values by int16 twiddles ``(br, bi)``."""
  ar, ai = ar.astype(jnp.int32), ai.astype(jnp.int32)
  return _round15(ar * br - ai * bi), _round15(ar * bi + ai * br)


def _fixdiv(re: Array, im: Array, radix: int) -> tuple[Array, Array]:
  """``C_FIXDIV``: times ``32767 // radix`` in 15-bit fixed point."""
  k = 0x7FFF // radix
  return (_round15(re.astype(jnp.int32) * k),
          _round15(im.astype(jnp.int32) * k))


def _butterfly(re: Array, im: Array, stride: int, twiddles: np.ndarray
               ) -> tuple[Array, Array]:
  """One kissfft stage: sub-FFTs ``[groups, p, m, M]`` -> ``[groups, p, m, M]``.

  ``stride``: kissfft's ``fstride`` (full FFT length / this stage's length),
  so the twiddle of sub-FFT ``q``, bin ``u`` is ``twiddles[q * stride * u]``.
  """
  radix, m = re.shape[1:3]
  re, im = _fixdiv(re, im, radix)
  index = np.arange(1, radix)[:, None] * stride * np.arange(m)
  tw_re, tw_im = twiddles[:, index, None]  # [p - 1, m, 1] each
  # Sub-FFT 0 is not rotated; the others are, all at once.
  x0 = re[:, 0], im[:, 0]
  rotated = _cmul(re[:, 1:], im[:, 1:], tw_re, tw_im)
  s = [(rotated[0][:, q], rotated[1][:, q]) for q in range(radix - 1)]
  add = lambda a, b: (a[0] + b[0], a[1] + b[1])
  sub = lambda a, b: (a[0] - b[0], a[1] - b[1])
  if radix == 2:
    outs = [add(x0, s[0]), sub(x0, s[0])]
  else:  # radix 4, forward: kf_bfly4's scratch values
    s5, f0 = sub(x0, s[1]), add(x0, s[1])
    s3, s4 = add(s[0], s[2]), sub(s[0], s[2])
    outs = [add(f0, s3), (s5[0] + s4[1], s5[1] - s4[0]), sub(f0, s3),
            (s5[0] - s4[1], s5[1] + s4[0])]
  return (jnp.stack([o[0] for o in outs], 1),
          jnp.stack([o[1] for o in outs], 1))


def _kiss_fft(re: Array, im: Array, factors: tuple[int, ...],
              twiddles: np.ndarray) -> tuple[Array, Array]:
  """kissfft's decimation-in-time complex FFT along axis 0 of ``[n, M]``.

  kissfft recurses on decimated inputs; that is one digit-reversal of the
  input (radices ``p1, p2, ...``: sample ``q1 + p1 q2 + p1 p2 q3 + ...``
  goes to ``[q1, q2, q3, ...]``) and then the stages from the innermost
  radix out, each on ``[p1 ... p(j-1), pj, pj+1 ... pk]``.
  """
  n, frames = re.shape
  k = len(factors)
  order = tuple(reversed(range(k))) + (k,)

  def reverse_digits(x):
    return jnp.transpose(x.reshape(*reversed(factors), frames), order)

  re, im = reverse_digits(re), reverse_digits(im)
  for j in reversed(range(k)):
    groups = math.prod(factors[:j])
    shape = (groups, factors[j], n // groups // factors[j], frames)
    re, im = _butterfly(re.reshape(shape), im.reshape(shape), groups,
                        twiddles)
  return re.reshape(n, frames), im.reshape(n, frames)


def _kiss_fftr(x: Array, tables: _Tables) -> tuple[Array, Array]:
  """kissfft's real FFT along axis 0: int16 ``[n, M]`` -> bins ``[n / 2 + 1, M]``."""
  ncfft = x.shape[0] // 2
  half = ncfft // 2
  re, im = _kiss_fft(x[0::2], x[1::2], tables.factors, tables.twiddles)
  dc_re, dc_im = _fixdiv(re[:1], im[:1], 2)
  # Bins k = 1..ncfft/2 and their mirrors ncfft - k.
  fpk = _fixdiv(re[1:half + 1], im[1:half + 1], 2)
  fpnk = _fixdiv(jnp.flip(re[ncfft - half:], 0),
                 -jnp.flip(im[ncfft - half:], 0), 2)
  f1_re, f1_im = fpk[0] + fpnk[0], fpk[1] + fpnk[1]
  tw_re, tw_im = _cmul(fpk[0] - fpnk[0], fpk[1] - fpnk[1],
                       *tables.super_twiddles[:, :, None])
  f1_re, f1_im = f1_re.astype(jnp.int32), f1_im.astype(jnp.int32)
  tw_re, tw_im = tw_re.astype(jnp.int32), tw_im.astype(jnp.int32)
  halve = lambda v: (v >> 1).astype(jnp.int16)  # HALF_OF of an int sum
  low_re, low_im = halve(f1_re + tw_re), halve(f1_im + tw_im)
  high_re, high_im = halve(f1_re - tw_re), halve(tw_im - f1_im)
  # Bin ncfft/2 is written twice; the mirror's value is the one kept.
  zero = jnp.zeros_like(dc_re)
  real = jnp.concatenate([dc_re + dc_im, low_re[:-1], jnp.flip(high_re, 0),
                          dc_re - dc_im])
  imag = jnp.concatenate([zero, low_im[:-1], jnp.flip(high_im, 0), zero])
  return real, imag


# -- Stage 3: square-root filterbank ------------------------------------------


def _accumulate(energy: Array, tables: _Tables) -> U64:
  """64-bit weighted sums ``[M, C]`` of energies ``[bins, M]`` uint32.

  Exact products and sums of up to 2**44 without 64-bit integers: energy
  limbs times 6-bit weight parts, summed by a float32 matmul that stays
  below 2**24 (``_filterbank_matrix``), then shifted into place in 64 bits.
  """
  used, channels = tables.matrix.shape[0], tables.matrix.shape[1] // 2
  energy = energy[tables.first_bin:tables.first_bin + used]  # [used, M]
  bits = tables.limb_bits
  count = -(-32 // bits)
  limbs = jnp.stack([(energy >> (bits * i)) & ((1 << bits) - 1)
                     for i in range(count)])  # [count, used, M]
  sums = jax.lax.dot_general(
      limbs.astype(jnp.float32), jnp.asarray(tables.matrix),
      (((1,), (0,)), ((), ())), precision=jax.lax.Precision.HIGHEST)
  # The barrier keeps XLA from fusing the conversion into the matmul, which
  # makes the CPU matmul a slow loop.
  sums = jax.lax.optimization_barrier(sums).astype(jnp.uint32)  # [count, M, 2C]
  zero = jnp.zeros(sums.shape[1:2] + (channels,), jnp.uint32)
  total = (zero, zero)
  for i in range(count):
    for part in range(2):
      total = _add_u64(total, _shift_left_u64(
          sums[i, :, part * channels:(part + 1) * channels],
          bits * i + 6 * part))
  return total


def _square(r: Array) -> U64:
  return _mul_u32(r, r)


def _isqrt(hi: Array, lo: Array) -> Array:
  """``floor(sqrt(n))`` of 64-bit ``n`` (results below 2**31), exactly."""
  n = (hi, lo)
  estimate = jnp.sqrt(hi.astype(jnp.float32) * 2.0**32 +
                      lo.astype(jnp.float32))
  r = jnp.clip(jnp.floor(estimate), 0, 2.0**31 - 1).astype(jnp.uint32)
  # One Newton step on the exact residual n - r^2, then +-1 corrections.
  res_hi, res_lo = _sub_u64(n, _square(r))
  residual = (jax.lax.bitcast_convert_type(res_hi, jnp.int32).astype(
      jnp.float32) * 2.0**32 + res_lo.astype(jnp.float32))
  delta = jnp.round(residual / (2.0 * r.astype(jnp.float32) + 1.0))
  r = (r.astype(jnp.int32) + delta.astype(jnp.int32)).astype(jnp.uint32)
  for _ in range(2):
    r = jnp.where(_less_u64(n, _square(r)), r - 1, r)
  for _ in range(2):
    up = r + 1
    r = jnp.where(_less_u64(n, _square(up)), r, up)
  return r


def _isqrt_rounded(hi: Array, lo: Array) -> Array:
  """TFLM's ``Sqrt64``: the square root rounded to nearest, uint32.

  Below 2**32 it is ``Sqrt32``, whose result stops at 0xFFFF (the C code's
  "slight off by one issue for numbers close to 2^32").
  """
  r = _isqrt(hi, lo)
  remainder = _sub_u64((hi, lo), _square(r))
  cap = jnp.where(hi == 0, np.uint32(0xFFFF), np.uint32(0xFFFFFFFF))
  round_up = _less_u64((jnp.zeros_like(r), r), remainder) & (r != cap)
  return r + round_up.astype(jnp.uint32)


# -- Stage 4: noise reduction -------------------------------------------------


def _smooth(scaled: Array, estimate: Array, smoothing: np.ndarray) -> Array:
  """``(scaled s + estimate (2**14 - s)) >> 14`` in 64 bits, kept as uint32."""
  total = _add_u64(_mul_u32(scaled, smoothing),
                   _mul_u32(estimate, (1 << NOISE_REDUCTION_BITS) - smoothing))
  return _shift_right_u64(total, NOISE_REDUCTION_BITS)[1]


def _noise_estimates(scaled: Array, noise: Array, smoothing: np.ndarray,
                     update: Array | None) -> tuple[Array, Array]:
  """The recursive noise estimate: ``(last [B, C], per frame [B, F, C])``.

  ``scaled``: the filterbank times ``2**smoothing_bits``, ``[B, F, C]``
  uint32. Frames with ``update`` False (``[B, F]``) keep the estimate before
  them (the frame's own value is what it would have been).
  """
  frames = jnp.moveaxis(scaled, 1, 0)
  if update is None:
    def step(estimate, signal):
      estimate = _smooth(signal, estimate, smoothing)
      return estimate, estimate
    noise, estimates = jax.lax.scan(step, noise, frames)
  else:
    def step(estimate, inputs):
      signal, keep = inputs
      new = _smooth(signal, estimate, smoothing)
      return jnp.where(keep[:, None], new, estimate), new
    noise, estimates = jax.lax.scan(step, noise,
                                    (frames, jnp.moveaxis(update, 1, 0)))
  return noise, jnp.moveaxis(estimates, 0, 1)


def _reduce_noise(signal: Array, scaled: Array, estimates: Array,
                  smoothing_bits: int, min_signal: int) -> Array:
  """The signal less its noise estimate, floored at ``min_signal_remaining``."""
  estimate = jnp.minimum(estimates, scaled)
  subtracted = (scaled - estimate) >> smoothing_bits
  floor = _shift_right_u64(_mul_u32(signal, np.uint32(min_signal)),
                           NOISE_REDUCTION_BITS)[1]
  return jnp.maximum(subtracted, floor)


# -- Stage 5: PCAN gain control -----------------------------------------------


def _wide_dynamic_gain(x: Array, lut: np.ndarray) -> Array:
  """TFLM's ``WideDynamicFunction``: the gain of noise estimate ``x``, uint32."""
  interval = _msb(x)
  base_index = jnp.maximum(4 * interval - 6, 0)
  up = jnp.clip(11 - interval, 0, 31).astype(jnp.uint32)
  down = jnp.clip(interval - 11, 0, 31).astype(jnp.uint32)
  frac = (jnp.where(interval < 11, x << up, x >> down) & 0x3FF).astype(
      jnp.int32)
  lut = jnp.asarray(lut)
  y0, a1, a2 = (jnp.take(lut, base_index + i) for i in range(3))
  result = (a2 * frac) >> 5
  result = (result + a1 * 32) * frac
  result = (((result + (1 << 14)) >> 15) + y0).astype(jnp.int16)
  small = jnp.take(lut, jnp.minimum(x, 2).astype(jnp.int32))
  gain = jnp.where(x <= 2, small, result.astype(jnp.int32))  # int16 values
  return jax.lax.bitcast_convert_type(gain, jnp.uint32)


def _pcan(signal: Array, estimates: Array, lut: np.ndarray, snr_shift: int
          ) -> Array:
  """Per-channel automatic gain control and TFLM's ``PcanShrink``."""
  gain = _wide_dynamic_gain(estimates, lut)
  snr = _shift_right_u64(_mul_u32(signal, gain), snr_shift)[1]
  quadratic = (snr * snr) >> (2 + 2 * PCAN_SNR_BITS - PCAN_OUTPUT_BITS)
  linear = (snr >> (PCAN_SNR_BITS - PCAN_OUTPUT_BITS)) - (1 << PCAN_OUTPUT_BITS)
  return jnp.where(snr < (2 << PCAN_SNR_BITS), quadratic, linear)


# -- Stage 6: log scale -------------------------------------------------------


def _log_scale(signal: Array, correction_bits: int, scale_shift: int,
               lut: np.ndarray) -> Array:
  """TFLM's ``LogScaleApply``: ``2**scale_shift ln(x)`` in integers, capped at 65535."""
  if correction_bits >= 0:
    value = signal << correction_bits
  else:
    value = signal >> -correction_bits
  integer = jnp.maximum(_msb(value) - 1, 0)
  top = jnp.left_shift(np.uint32(1), integer.astype(jnp.uint32))
  frac = (value - top).astype(jnp.int32)
  frac = jnp.where(integer < LOG_SCALE_BITS,
                   frac << jnp.clip(LOG_SCALE_BITS - integer, 0, 31),
                   frac >> jnp.clip(integer - LOG_SCALE_BITS, 0, 31))
  segment = frac >> (LOG_SCALE_BITS - LOG_SEGMENTS_BITS)
  lut = jnp.asarray(lut)
  c0, c1 = jnp.take(lut, segment), jnp.take(lut, segment + 1)
  offset = frac - (segment << (LOG_SCALE_BITS - LOG_SEGMENTS_BITS))
  fraction = frac + c0 + (((c1 - c0) * offset) >> LOG_SCALE_BITS)
  log2 = (integer.astype(jnp.uint32) << LOG_SCALE_BITS) + fraction.astype(
      jnp.uint32)
  half = np.uint32(1 << (LOG_SCALE_BITS - 1))
  loge = _shift_right_u64(
      _add_u64(_mul_u32(log2, np.uint32(LOG_COEFF)),
               (jnp.zeros_like(log2), jnp.full_like(log2, half))),
      LOG_SCALE_BITS)[1]
  scaled = ((loge << scale_shift) + half) >> LOG_SCALE_BITS
  out = jnp.where(value > 1, scaled, np.uint32(0))
  return jnp.minimum(out, np.uint32(UINT16_MAX))
