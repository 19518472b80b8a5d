"""Training augmentation as jitted JAX functions of (key, batch), on the device.

The same steps and distributions as kws_jax.data.augment (kws_streaming's
stretch, foreground volume, time shift, background noise and clip, and
SpecAugment masks), drawn from a JAX key instead of a numpy Generator: the
outputs are equal to the host's in distribution, not draw for draw. Every
function works with fixed shapes and no loop over rows, so a train step can
augment its batch under jax.jit, with the settings static.

The host only reads and places the clips: each row of the [B, W] window holds
its N-sample foreground clip at its end, after zeros (pipeline.train_batch
with augment_on_device=True).

The stretch is exact: a float32 factor r gives int(N * r) samples (the
product is computed in integers), and each output sample's source position
((2j + 1) * N - L) / (2L) is an exact quotient and remainder, so a row
equals augment.stretch(row, r) up to float32 rounding of the interpolation.

Unlike the rest of kws_jax.data, this module imports JAX; the data package
does not import it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.data import augment

# Longest foreground clip: the exact integer position arithmetic stays
# within int32 up to here (16 s at 16 kHz).
MAX_FOREGROUND_SAMPLES = 2**18


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=['samples', 'starts', 'lengths'],
                   meta_fields=['shortest'])
@dataclasses.dataclass(frozen=True)
class NoiseBank:
  """Background recordings as one flat array, to put on the device once.

  Attributes:
    samples: float32 [sum M_i], the recordings one after another.
    starts: int32 [K], where recording i starts in `samples`.
    lengths: int32 [K], M_i.
    shortest: min M_i (0 for an empty bank); static, checked against the
      window length when the bank is used.
  """

  samples: jax.Array | np.ndarray
  starts: jax.Array | np.ndarray
  lengths: jax.Array | np.ndarray
  shortest: int

  def __len__(self) -> int:
    return int(np.shape(self.starts)[0])


def noise_bank(noise: Sequence[np.ndarray], window_samples: int) -> NoiseBank:
  """Packs background recordings (numpy leaves; `jax.device_put` it once).

  Args:
    noise: float32 [M_i] recordings, each longer than the window; may be
      empty (then no background is mixed in, as on the host).
    window_samples: W, the length of the windows they will be mixed into.

  Raises:
    ValueError: a recording not longer than W, or more samples than int32
      indices reach.
  """
  lengths = np.array([len(recording) for recording in noise], np.int64)
  if np.any(lengths <= window_samples):
    raise ValueError(
        f'noise: a background recording of {lengths.min()} samples, expected '
        f'more than window_samples={window_samples}')
  if lengths.sum() >= 2**31:
    raise ValueError(f'noise: {lengths.sum()} samples in all, expected fewer '
                     'than 2**31')
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
  samples = (np.concatenate([np.asarray(r, np.float32) for r in noise])
             if len(noise) else np.zeros(0, np.float32))
  return NoiseBank(samples, starts[:len(noise)], lengths.astype(np.int32),
                   int(lengths.min()) if len(noise) else 0)


class Draws(NamedTuple):
  """The random parameters of one batch's audio augmentation, all [B].

  factors: float32 stretch factors r; lengths: int32 int(N * r);
  volumes: float32 foreground gains (0 for silence rows); shifts: int32 time
  shifts in samples (> 0: later); noise_index, noise_offset: int32 recording
  and start of each row's background crop; noise_volume: float32 (0 where no
  background is mixed).
  """

  factors: jax.Array
  lengths: jax.Array
  volumes: jax.Array
  shifts: jax.Array
  noise_index: jax.Array
  noise_offset: jax.Array
  noise_volume: jax.Array


def draw(key: jax.Array, is_silence: jax.Array, noise: NoiseBank,
         config: augment.AudioAugmentation, foreground_samples: int,
         window_samples: int) -> Draws:
  """Draws every row's parameters, with augment.augment_batch's distributions.

  Args:
    key: A JAX PRNG key.
    is_silence: bool [B]; those rows get volume 0.
    noise: The background bank (may be empty: no background).
    config: The settings (static under jit).
    foreground_samples: N, the clip length.
    window_samples: W >= N, the window the background covers.
  """
  batch_size = is_silence.shape[0]
  keys = jax.random.split(key, 7)
  shape = (batch_size,)
  if config.resample > 0:
    factors = jax.random.uniform(keys[0], shape, jnp.float32,
                                 1 - config.resample, 1 + config.resample)
  else:
    factors = jnp.ones(shape, jnp.float32)
  if config.volume_resample > 0:
    volumes = jax.random.uniform(keys[1], shape, jnp.float32,
                                 1 - config.volume_resample,
                                 1 + config.volume_resample)
  else:
    volumes = jnp.ones(shape, jnp.float32)
  volumes = jnp.where(is_silence, 0.0, volumes)
  max_shift = config.time_shift_samples
  shifts = (jax.random.randint(keys[2], shape, -max_shift, max_shift)
            if max_shift > 0 else jnp.zeros(shape, jnp.int32))
  if len(noise):
    index = jax.random.randint(keys[3], shape, 0, len(noise))
    offset = jax.random.randint(keys[4], shape, 0,
                                noise.lengths[index] - window_samples)
    mix = jax.random.uniform(keys[5], shape) < config.background_frequency
    noise_volume = jnp.where(
        mix, jax.random.uniform(keys[6], shape, jnp.float32, 0.0,
                                config.background_volume), 0.0)
  else:
    index = offset = jnp.zeros(shape, jnp.int32)
    noise_volume = jnp.zeros(shape, jnp.float32)
  return Draws(factors, stretched_lengths(factors, foreground_samples),
               volumes, shifts, index, offset, noise_volume)


def stretched_lengths(factors: jax.Array, length: int) -> jax.Array:
  """int(length * r) for float32 factors r in (0, 2), exactly: int32 [B].

  r = m * 2**-s with a 24-bit integer m, so length * r = length * m / 2**s:
  the product is split in 12-bit halves of m to stay within int32 (float32
  arithmetic would round e.g. 2000 * float32(1.15) = 2299.99995 up to 2300).
  """
  bits = jax.lax.bitcast_convert_type(factors.astype(jnp.float32), jnp.int32)
  mantissa = (bits & 0x7FFFFF) | 0x800000
  shift = 150 - ((bits >> 23) & 0xFF)  # r = mantissa * 2**-shift
  high = (mantissa >> 12) * length  # < 2**12 * length
  low = (mantissa & 0xFFF) * length
  total = high + (low >> 12)  # floor(length * mantissa / 2**12)
  return jnp.where(shift >= 43, 0, total >> jnp.clip(shift - 12, 0, 31))


def _divmod_product(a: jax.Array, n: int, d: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """(a * n // d, a * n % d) for 0 <= a < 4n, 0 < d <= 4n, within int32.

  a = 256 * high + low, so no product exceeds n**2 / 64 or 1024 * n.
  """
  q1, r1 = jnp.divmod((a >> 8) * n, d)
  q2, r2 = jnp.divmod(r1 * 256, d)
  q3, r3 = jnp.divmod((a & 0xFF) * n, d)
  q4, remainder = jnp.divmod(r2 + r3, d)
  return q1 * 256 + q2 + q3 + q4, remainder


def stretch_and_shift(clips: jax.Array, lengths: jax.Array,
                      shifts: jax.Array) -> jax.Array:
  """augment.stretch to `lengths`, then augment.time_shift, row by row.

  Each output sample i takes resized sample j = i - shift + offset (offset:
  the center crop or pad of tf.image.resize_with_crop_or_pad, with its floor
  divisions), at source position x = ((2j + 1) * N - L) / (2L) (half-pixel
  centers), linearly interpolated between the clamped neighbours; samples
  outside the shifted or resized clip are 0.

  Args:
    clips: float32 [B, N].
    lengths: int32 [B], L = int(N * r) (see stretched_lengths); N: no stretch.
    shifts: int32 [B], in samples (> 0: later).

  Returns:
    float32 [B, N].
  """
  n = clips.shape[1]
  lengths = lengths[:, None]
  shifted = jnp.arange(n)[None, :] - shifts[:, None]
  offset = jnp.where(lengths >= n, (lengths - n) // 2, -((n - lengths) // 2))
  j = shifted + offset
  inside = (shifted >= 0) & (shifted < n) & (j >= 0) & (j < lengths)
  j = jnp.clip(j, 0, jnp.maximum(lengths - 1, 0))
  denominator = jnp.maximum(2 * lengths, 1)
  quotient, remainder = _divmod_product(2 * j + 1, n, denominator)
  before = remainder < lengths  # x = quotient + (remainder - L) / (2L)
  low = quotient - before
  fraction = ((remainder - lengths + jnp.where(before, denominator, 0))
              .astype(jnp.float32) / denominator.astype(jnp.float32))
  left = jnp.take_along_axis(clips, jnp.clip(low, 0, n - 1), axis=1)
  right = jnp.take_along_axis(clips, jnp.clip(low + 1, 0, n - 1), axis=1)
  return jnp.where(inside, left + (right - left) * fraction, 0.0)


def apply(audio: jax.Array, augment_rows: jax.Array, noise: NoiseBank,
          draws: Draws, foreground_samples: int) -> jax.Array:
  """Augments [B, W] windows with given draws (the deterministic part).

  The last N = foreground_samples samples of each row are its clip: stretch,
  volume and shift act on it, it is put back at the end of a zero window, the
  background crop is mixed over the whole window and the result clipped to
  [-1, 1]. Rows where augment_rows is False are returned unchanged.
  """
  window = audio.shape[1]
  clips = audio[:, window - foreground_samples:]
  moved = stretch_and_shift(clips, draws.lengths, draws.shifts)
  foreground = jnp.where(draws.volumes[:, None] == 0, 0.0,
                         moved * draws.volumes[:, None])
  out = jnp.pad(foreground, ((0, 0), (window - foreground_samples, 0)))
  if len(noise):
    first = noise.starts[draws.noise_index] + draws.noise_offset
    crops = noise.samples[first[:, None] + jnp.arange(window)[None, :]]
    out = out + draws.noise_volume[:, None] * crops
  out = jnp.clip(out, -1.0, 1.0)
  return jnp.where(augment_rows[:, None], out, audio)


def check_inputs(audio_shape: tuple[int, ...], noise: NoiseBank,
                 foreground_samples: int) -> None:
  """Raises ValueError for audio, foreground and noise that do not fit."""
  if len(audio_shape) != 2:
    raise ValueError(f'audio of shape {audio_shape}, expected [batch, '
                     'window]')
  window = audio_shape[1]
  if not 1 <= foreground_samples <= min(window, MAX_FOREGROUND_SAMPLES):
    raise ValueError(
        f'foreground_samples={foreground_samples}, expected 1 to the window '
        f'length W={window} (and at most {MAX_FOREGROUND_SAMPLES})')
  if len(noise) and noise.shortest <= window:
    raise ValueError(
        f'noise: a background recording of {noise.shortest} samples, '
        f'expected more than the window length W={window}')


def augment_audio(key: jax.Array, audio: jax.Array, is_silence: jax.Array,
                  augment_rows: jax.Array, noise: NoiseBank,
                  config: augment.AudioAugmentation,
                  foreground_samples: int) -> jax.Array:
  """augment.augment_batch on the device, equal to it in distribution.

  Args:
    key: A JAX PRNG key; the output is a pure function of it and the inputs.
    audio: float32 [B, W]; each row's clip is its last N samples (zeros
      before them, as the host places it).
    is_silence: bool [B]; those rows get no foreground.
    augment_rows: bool [B]; False rows (window-bank rows) are returned as
      they are.
    noise: The background bank (noise_bank; empty: no background).
    config: The settings (static under jit: a frozen dataclass).
    foreground_samples: N <= W.

  Returns:
    float32 [B, W], augmented rows in [-1, 1].

  Raises:
    ValueError: shapes that do not fit (names the argument).
  """
  check_inputs(audio.shape, noise, foreground_samples)
  for name, value in (('is_silence', is_silence),
                      ('augment_rows', augment_rows)):
    if value.shape != audio.shape[:1]:
      raise ValueError(f'{name} of shape {value.shape}, expected '
                       f'({audio.shape[0]},) (one per audio row)')
  draws = draw(key, is_silence, noise, config, foreground_samples,
               audio.shape[1])
  return apply(audio, augment_rows, noise, draws, foreground_samples)


def _masks(key: jax.Array, batch_size: int, count: int, max_size: int,
           length: int) -> jax.Array:
  """`count` stripes per row, width U{0..min(max_size, length+1)-1}: [B, L]."""
  mask = jnp.ones((batch_size, length), jnp.float32)
  positions = jnp.arange(length)[None, :]
  for stripe_key in jax.random.split(key, count):
    width_key, start_key = jax.random.split(stripe_key)
    widths = (jax.random.randint(width_key, (batch_size,), 0,
                                 min(max_size, length + 1))
              if max_size > 0 else jnp.zeros(batch_size, jnp.int32))
    starts = jax.random.randint(start_key, (batch_size,), 0,
                                length - widths + 1)
    inside = ((positions >= starts[:, None]) &
              (positions < (starts + widths)[:, None]))
    mask = jnp.where(inside, 0.0, mask)
  return mask


def spec_augment_masks(key: jax.Array, batch_size: int, num_frames: int,
                       num_bins: int, config: augment.SpecAugment
                       ) -> tuple[jax.Array, jax.Array]:
  """augment.spec_augment_masks on the device (same distributions).

  Returns:
    (time_mask float32 [B, T], frequency_mask float32 [B, F]): 0 where
    masked, 1 elsewhere; independent per row.
  """
  for name, value in (('batch_size', batch_size), ('num_frames', num_frames),
                      ('num_bins', num_bins)):
    if value < 1:
      raise ValueError(f'{name}={value}, expected >= 1')
  time_key, frequency_key = jax.random.split(key)
  return (_masks(time_key, batch_size, config.time_masks,
                 config.time_mask_max_size, num_frames),
          _masks(frequency_key, batch_size, config.frequency_masks,
                 config.frequency_mask_max_size, num_bins))


@dataclasses.dataclass(frozen=True)
class DeviceAugmentation:
  """What a train step augments on the device (static under jit).

  Attributes:
    audio: The raw-audio settings.
    foreground_samples: N, the clip length inside the W-sample window.
    spec_augment: SpecAugment settings, or None for no masks.
    feature_shape: (T, F) of the model's features; with spec_augment.
  """

  audio: augment.AudioAugmentation
  foreground_samples: int
  spec_augment: augment.SpecAugment | None = None
  feature_shape: tuple[int, int] | None = None

  def __post_init__(self):
    if (self.spec_augment is None) != (self.feature_shape is None):
      raise ValueError(
          f'spec_augment={self.spec_augment} and feature_shape='
          f'{self.feature_shape}, expected both or neither')


def augment_batch(key: jax.Array, batch: dict[str, jax.Array],
                  noise: NoiseBank, settings: DeviceAugmentation
                  ) -> dict[str, jax.Array]:
  """A host batch (augment_on_device=True) augmented as a training batch.

  Args:
    key: A JAX PRNG key.
    batch: "audio" float32 [B, W], "is_silence" and "augment" bool [B], and
      any other entries (kept).
    noise: The background bank.
    settings: What to augment.

  Returns:
    The batch with augmented "audio", without "is_silence" and "augment",
    and with "time_mask" [B, T] and "frequency_mask" [B, F] when
    settings.spec_augment is set.
  """
  missing = {'audio', 'is_silence', 'augment'} - set(batch)
  if missing:
    raise ValueError(f'batch lacks {sorted(missing)}; expected a batch of '
                     'train_batches(..., augment_on_device=True)')
  audio_key, spec_key = jax.random.split(key)
  out = {k: v for k, v in batch.items() if k not in ('is_silence', 'augment')}
  out['audio'] = augment_audio(audio_key, batch['audio'], batch['is_silence'],
                               batch['augment'], noise, settings.audio,
                               settings.foreground_samples)
  if settings.spec_augment is not None:
    out['time_mask'], out['frequency_mask'] = spec_augment_masks(
        spec_key, batch['audio'].shape[0], *settings.feature_shape,
        settings.spec_augment)
  return out
