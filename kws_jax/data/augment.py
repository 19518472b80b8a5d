"""Training-time augmentation, as in kws_streaming (input_data.py, SpecAugment).

Every function takes a numpy Generator and draws from it in a fixed order, so
the output is a pure function of (inputs, generator state).

Audio, per clip, in kws_streaming's order (AudioAugmentation's defaults are its
flag defaults):
  1. stretch: resample the [N] clip to int(N * r) samples, r ~ U(1 - resample,
     1 + resample), by linear interpolation (tf.image.resize, bilinear,
     half-pixel centers), then center-crop or center-pad back to N
     (tf.image.resize_with_crop_or_pad):
     r > 1 slows the word down and lowers its pitch, r < 1 the opposite;
  2. foreground volume: 0 for silence examples, else 1 (or ~ U(1 - v, 1 + v)
     with volume_resample = v > 0);
  3. time shift: s ~ U{-S, ..., S - 1} samples, S = time_shift_ms * rate / 1000;
     s > 0 delays the clip, s < 0 advances it, zeros fill the gap;
  4. background: a random clip-long crop of a random noise file, mixed at
     volume U(0, background_volume) with probability background_frequency,
     else 0 (with a `window_samples` longer than the clips, steps 1-3 act on
     the clip, which is then placed at the end of the window, and the
     background covers the whole window);
  5. clip to [-1, 1].
Silence examples are thus background noise only (or zeros, 20% of the time).

Features: spec_augment masks 2 time stripes of up to 10 frames and 2 frequency
stripes of up to 5 bins of [batch, time, feature] features, with widths drawn
like kws_streaming (U{0, ..., max_size - 1}) but, unlike its layer (one mask per
batch), independently per example, as in the SpecAugment paper.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class AudioAugmentation:
  """Raw-audio augmentation settings; the defaults are kws_streaming's."""

  background_frequency: float = 0.8
  background_volume: float = 0.1
  time_shift_ms: float = 100.0
  resample: float = 0.15
  volume_resample: float = 0.0
  sample_rate: int = 16000

  def __post_init__(self):
    # Named as the config's data.* fields that set them.
    for name, low, high in (('background_frequency', 0.0, 1.0),
                            ('background_volume', 0.0, math.inf),
                            ('time_shift_ms', 0.0, math.inf),
                            ('resample', 0.0, 0.99),
                            ('volume_resample', 0.0, 1.0)):
      value = getattr(self, name)
      if not low <= value <= high:  # NaN fails too
        raise ValueError(f'data.{name} is {value}, expected {low:g} <= '
                         f'{name} <= {high:g}')

  @property
  def time_shift_samples(self) -> int:
    return int(self.time_shift_ms * self.sample_rate / 1000)


@dataclasses.dataclass(frozen=True)
class SpecAugment:
  """SpecAugment settings; defaults are kws_streaming's."""

  time_masks: int = 2
  time_mask_max_size: int = 10
  frequency_masks: int = 2
  frequency_mask_max_size: int = 5


def stretch(audio: np.ndarray, factor: float) -> np.ndarray:
  """Resizes float32 [N] audio by `factor` and center-crops/pads it back to [N].

  Linear interpolation at half-pixel centers, clamped at the edges, exactly as
  tf.image.resize(method="bilinear") on an [N, 1] image, followed by
  tf.image.resize_with_crop_or_pad: kws_streaming's `resample` augmentation.
  """
  length = len(audio)
  new_length = int(length * factor)
  if new_length == length:
    return audio.copy()
  positions = (np.arange(new_length) + 0.5) * (length / new_length) - 0.5
  resized = np.interp(positions, np.arange(length), audio).astype(np.float32)
  if new_length > length:
    start = (new_length - length) // 2
    return resized[start : start + length]
  before = (length - new_length) // 2
  return np.pad(resized, (before, length - new_length - before))


def time_shift(audio: np.ndarray, shift: int) -> np.ndarray:
  """Shifts [N] audio by `shift` samples (> 0: later), filling with zeros."""
  shifted = np.zeros_like(audio)
  if shift >= 0:
    shifted[shift:] = audio[: len(audio) - shift]
  else:
    shifted[:shift] = audio[-shift:]
  return shifted


def augment_batch(
    audio: np.ndarray,
    is_silence: np.ndarray,
    noise: Sequence[np.ndarray],
    rng: np.random.Generator,
    config: AudioAugmentation = AudioAugmentation(),
    window_samples: int | None = None,
) -> np.ndarray:
  """Augments a batch of clips (see the module docstring for the steps).

  Args:
    audio: float32 [B, N] clips (silence rows may hold anything).
    is_silence: bool [B]; those rows get no foreground.
    noise: Background recordings, float32 [M_i] with every M_i > W; may be
      empty (then no background is mixed in).
    rng: Source of all randomness, consumed in a fixed order.
    config: The settings.
    window_samples: W >= N, the output length (default N): each augmented
      clip ends where its window ends.

  Returns:
    float32 [B, W] in [-1, 1].
  """
  batch_size, clip_samples = audio.shape
  num_samples = clip_samples if window_samples is None else window_samples
  if num_samples < clip_samples:
    raise ValueError(
        f'window_samples={num_samples}, expected at least the clip length '
        f'{clip_samples}'
    )
  noise_lengths = np.array([len(recording) for recording in noise])
  if np.any(noise_lengths <= num_samples):
    raise ValueError(
        f'background noise recordings of {noise_lengths.min()} samples, '
        f'expected more than the clip length {num_samples}'
    )
  # All draws first, in a fixed order, so that rows do not depend on each other.
  if config.resample > 0:
    factors = rng.uniform(1 - config.resample, 1 + config.resample, batch_size)
  else:
    factors = np.ones(batch_size)
  if config.volume_resample > 0:
    volumes = rng.uniform(
        1 - config.volume_resample, 1 + config.volume_resample, batch_size
    )
  else:
    volumes = np.ones(batch_size)
  volumes = np.where(is_silence, 0.0, volumes)
  max_shift = config.time_shift_samples
  shifts = (
      rng.integers(-max_shift, max_shift, batch_size)
      if max_shift > 0
      else np.zeros(batch_size, int)
  )
  if noise:
    noise_index = rng.integers(0, len(noise), batch_size)
    noise_offsets = rng.integers(0, noise_lengths[noise_index] - num_samples)
    mix = rng.uniform(0, 1, batch_size) < config.background_frequency
    noise_volumes = np.where(
        mix, rng.uniform(0, config.background_volume, batch_size), 0.0
    )

  out = np.zeros((batch_size, num_samples), np.float32)
  clips = out[:, num_samples - clip_samples :]
  for row in range(batch_size):
    if volumes[row] == 0:
      continue
    foreground = (
        audio[row] if factors[row] == 1 else stretch(audio[row], factors[row])
    )
    clips[row] = time_shift(
        foreground * np.float32(volumes[row]), int(shifts[row])
    )
  if noise:
    for row in range(batch_size):
      offset = noise_offsets[row]
      crop = noise[noise_index[row]][offset : offset + num_samples]
      out[row] += np.float32(noise_volumes[row]) * crop
  return np.clip(out, -1.0, 1.0, out=out)


def spec_augment_masks(
    rng: np.random.Generator,
    batch_size: int,
    num_frames: int,
    num_bins: int,
    config: SpecAugment = SpecAugment(),
) -> tuple[np.ndarray, np.ndarray]:
  """Draws SpecAugment masks, to multiply into [B, T, F] features.

  Each mask has width w ~ U{0, ..., max_size - 1} and a start uniform over the
  positions where it fits.

  Returns:
    (time_mask float32 [B, T], frequency_mask float32 [B, F]): 0 where masked,
    1 elsewhere. features * time_mask[:, :, None] * frequency_mask[:, None, :]
    is the augmented batch; the product can run on device inside a jitted step.
  """

  def masks(count: int, max_size: int, length: int) -> np.ndarray:
    mask = np.ones((batch_size, length), np.float32)
    positions = np.arange(length)
    for _ in range(count):
      widths = (
          rng.integers(0, min(max_size, length + 1), batch_size)
          if max_size > 0
          else np.zeros(batch_size, int)
      )
      starts = rng.integers(0, length - widths + 1)
      inside = (positions >= starts[:, None]) & (
          positions < (starts + widths)[:, None]
      )
      mask[inside] = 0.0
    return mask

  time_mask = masks(config.time_masks, config.time_mask_max_size, num_frames)
  frequency_mask = masks(
      config.frequency_masks, config.frequency_mask_max_size, num_bins
  )
  return time_mask, frequency_mask


def spec_augment(
    features: np.ndarray,
    rng: np.random.Generator,
    config: SpecAugment = SpecAugment(),
) -> np.ndarray:
  """Applies spec_augment_masks to float [B, T, F] features: [B, T, F]."""
  batch_size, num_frames, num_bins = features.shape
  time_mask, frequency_mask = spec_augment_masks(
      rng, batch_size, num_frames, num_bins, config
  )
  return features * time_mask[:, :, None] * frequency_mask[:, None, :]
