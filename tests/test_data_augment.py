"""Augmentation: exact operations and the statistics of kws_streaming's defaults."""

import numpy as np
import pytest

from kws_jax.data import augment
from kws_jax.data.augment import AudioAugmentation, SpecAugment

# Small clips keep the statistics tests fast: 0.2 s at 10 kHz, time shift of 20 ms (200 samples).
RATE = 10000
CLIP = 2000


def stretch_reference(audio, factor):
  """tf.image.resize(bilinear, half-pixel centers) + resize_with_crop_or_pad, sample by sample."""
  length = len(audio)
  new_length = int(length * factor)
  resized = []
  for j in range(new_length):
    x = (j + 0.5) * length / new_length - 0.5
    low = int(np.floor(x))
    frac = x - low
    a = audio[min(max(low, 0), length - 1)]
    b = audio[min(max(low + 1, 0), length - 1)]
    resized.append(a + (b - a) * frac)
  resized = np.array(resized)
  if new_length >= length:
    start = (new_length - length) // 2
    return resized[start : start + length]
  before = (length - new_length) // 2
  return np.concatenate(
      [np.zeros(before), resized, np.zeros(length - new_length - before)]
  )


@pytest.mark.parametrize('factor', [0.85, 0.9, 0.97, 1.0, 1.03, 1.1, 1.15])
@pytest.mark.parametrize('length', [101, 400])
def test_stretch_matches_reference(factor, length):
  audio = (
      np.random.default_rng(length).uniform(-1, 1, length).astype(np.float32)
  )
  result = augment.stretch(audio, factor)
  assert result.shape == (length,) and result.dtype == np.float32
  np.testing.assert_allclose(
      result, stretch_reference(audio, factor), atol=1e-6
  )


@pytest.mark.parametrize('factor', [0.85, 0.93, 1.08, 1.15])
def test_stretch_matches_tensorflow(factor):
  tf = pytest.importorskip('tensorflow')
  audio = np.random.default_rng(1).uniform(-1, 1, 1600).astype(np.float32)
  image = audio[None, :, None, None]
  resized = tf.image.resize(image, (int(1600 * factor), 1))
  expected = (
      tf.image.resize_with_crop_or_pad(resized, 1600, 1).numpy().reshape(-1)
  )
  # TensorFlow computes the sampling positions in float32: ~1e-4 apart at sample 1600.
  np.testing.assert_allclose(
      augment.stretch(audio, factor), expected, atol=1e-3
  )


@pytest.mark.parametrize('factor', [0.85, 1.15])
def test_stretch_changes_frequency_by_inverse_factor(factor):
  t = np.arange(16000) / 16000
  audio = np.sin(2 * np.pi * 500 * t).astype(np.float32)
  result = augment.stretch(audio, factor)
  middle = result[4000:12000]
  peak_hz = (
      np.argmax(np.abs(np.fft.rfft(middle * np.hanning(8000)))) * 16000 / 8000
  )
  assert peak_hz == pytest.approx(500 / factor, abs=2.5)


@pytest.mark.parametrize('shift', [-3, 0, 2])
def test_time_shift(shift):
  result = augment.time_shift(np.arange(1.0, 6.0), shift)
  expected = {-3: [4, 5, 0, 0, 0], 0: [1, 2, 3, 4, 5], 2: [0, 0, 1, 2, 3]}[
      shift
  ]
  np.testing.assert_array_equal(result, expected)


def batch_config(**overrides):
  defaults = {'sample_rate': RATE, 'time_shift_ms': 20.0}  # 200 samples.
  return AudioAugmentation(**{**defaults, **overrides})


def test_background_volume_and_frequency_statistics():
  batch = 20000
  noise = [np.ones(CLIP + 500, np.float32), np.ones(CLIP + 1, np.float32)]
  out = augment.augment_batch(
      np.zeros((batch, CLIP), np.float32),
      np.ones(batch, bool),
      noise,
      np.random.default_rng(0),
      batch_config(),
  )
  volumes = out[:, 0]
  assert np.all(out == volumes[:, None])  # Silence: only the (constant) noise.
  mixed = volumes > 0
  assert mixed.mean() == pytest.approx(0.8, abs=0.015)  # background_frequency.
  assert volumes.max() <= 0.1
  # U(0, 0.1): mean 0.05, quartiles 0.025 and 0.075.
  assert volumes[mixed].mean() == pytest.approx(0.05, abs=0.001)
  np.testing.assert_allclose(
      np.quantile(volumes[mixed], [0.25, 0.5, 0.75]),
      [0.025, 0.05, 0.075],
      atol=0.002,
  )


def test_time_shift_statistics():
  batch = 20000
  clips = np.zeros((batch, CLIP), np.float32)
  clips[:, CLIP // 2] = 1.0
  out = augment.augment_batch(
      clips,
      np.zeros(batch, bool),
      [],
      np.random.default_rng(1),
      batch_config(resample=0.0),
  )
  shifts = out.argmax(axis=1) - CLIP // 2
  assert np.all(out.max(axis=1) == 1.0)
  # U{-200, ..., 199}: kws_streaming's np.random.randint(-time_shift, time_shift).
  assert shifts.min() == -200 and shifts.max() == 199
  assert shifts.mean() == pytest.approx(-0.5, abs=2.0)
  histogram = np.histogram(shifts, bins=8, range=(-200, 200))[0]
  assert np.all(np.abs(histogram / batch - 1 / 8) < 0.01)


def test_stretch_statistics():
  batch = 5000
  clips = np.zeros((batch, CLIP), np.float32)
  clips[:, CLIP // 2 - 300] = 1.0
  clips[:, CLIP // 2 + 300] = 1.0
  out = augment.augment_batch(
      clips,
      np.zeros(batch, bool),
      [],
      np.random.default_rng(2),
      batch_config(time_shift_ms=0.0),
  )
  # Two impulses 600 samples apart end up ~600 * r apart, r ~ U(0.85, 1.15).
  peaks = np.sort(np.argsort(out, axis=1)[:, -2:], axis=1)
  ratios = (peaks[:, 1] - peaks[:, 0]) / 600
  assert ratios.min() == pytest.approx(
      0.85, abs=0.01
  ) and ratios.max() == pytest.approx(1.15, abs=0.01)
  assert ratios.mean() == pytest.approx(1.0, abs=0.005)
  assert (
      np.abs(
          np.histogram(ratios, bins=6, range=(0.85, 1.15))[0] / batch - 1 / 6
      ).max()
      < 0.02
  )


def test_foreground_volume_resample():
  batch = 4000
  out = augment.augment_batch(
      np.full((batch, CLIP), 0.5, np.float32),
      np.zeros(batch, bool),
      [],
      np.random.default_rng(3),
      batch_config(resample=0.0, time_shift_ms=0.0, volume_resample=0.2),
  )
  gains = out[:, 0] / 0.5
  assert (
      gains.min() >= 0.8
      and gains.max() <= 1.2
      and gains.mean() == pytest.approx(1.0, abs=0.01)
  )


def test_output_is_clipped_and_silence_has_no_foreground():
  clips = np.full((6, CLIP), 0.99, np.float32)
  noise = [np.full(CLIP * 2, 5.0, np.float32)]
  is_silence = np.array([True, False] * 3)
  out = augment.augment_batch(
      clips,
      is_silence,
      noise,
      np.random.default_rng(4),
      batch_config(
          background_frequency=1.0,
          background_volume=1.0,
          resample=0.0,
          time_shift_ms=0.0,
      ),
  )
  assert out.min() >= -1.0 and out.max() <= 1.0
  assert np.all(
      out[~is_silence] > 0.98
  )  # Foreground 0.99 + noise, clipped at 1.
  assert np.all(out[is_silence] <= 1.0)


def test_augmentation_is_deterministic_given_the_generator():
  clips = (
      np.random.default_rng(5).uniform(-0.5, 0.5, (16, CLIP)).astype(np.float32)
  )
  noise = [np.random.default_rng(6).uniform(-1, 1, 5 * CLIP).astype(np.float32)]
  silence = np.arange(16) % 4 == 0
  run = lambda seed: augment.augment_batch(
      clips, silence, noise, np.random.default_rng(seed), batch_config()
  )
  np.testing.assert_array_equal(run(7), run(7))
  assert not np.array_equal(run(7), run(8))
  # A row depends on its own draws only through the batch order (fixed).
  np.testing.assert_array_equal(
      run(7)[:8],
      augment.augment_batch(
          clips, silence, noise, np.random.default_rng(7), batch_config()
      )[:8],
  )


def test_background_shorter_than_a_clip_is_an_error():
  with pytest.raises(
      ValueError,
      match='recordings of 2000 samples, expected more than the clip length 2000',
  ):
    augment.augment_batch(
        np.zeros((2, 2000), np.float32),
        np.zeros(2, bool),
        [np.zeros(5000), np.zeros(2000)],
        np.random.default_rng(0),
    )


@pytest.mark.parametrize(
    'config', [SpecAugment(), SpecAugment(1, 3, 3, 2), SpecAugment(0, 10, 2, 0)]
)
def test_spec_augment_mask_statistics(config):
  batch, frames, bins = 4000, 49, 40
  time_mask, freq_mask = augment.spec_augment_masks(
      np.random.default_rng(0), batch, frames, bins, config
  )
  assert time_mask.shape == (batch, frames) and freq_mask.shape == (batch, bins)
  for mask, count, max_size in (
      (time_mask, config.time_masks, config.time_mask_max_size),
      (freq_mask, config.frequency_masks, config.frequency_mask_max_size),
  ):
    assert set(np.unique(mask)) <= {0.0, 1.0}
    masked = (mask == 0).sum(axis=1)
    assert masked.max() <= count * max(max_size - 1, 0)
    if count and max_size > 1:
      # Widths U{0..max-1} with overlaps: the mean is a little below count * (max-1) / 2.
      assert (
          count * (max_size - 1) / 2 * 0.85
          <= masked.mean()
          <= count * (max_size - 1) / 2 * 1.05
      )
      assert masked.max() == count * (max_size - 1)
      # Independent per example.
      assert len({tuple(row) for row in mask[:50]}) > 10
      # Every position can be masked.
      assert np.all((mask == 0).any(axis=0))
    else:
      assert masked.max() == 0


def test_spec_augment_applies_masks():
  features = (
      np.random.default_rng(1).uniform(1, 2, (8, 49, 40)).astype(np.float32)
  )
  out = augment.spec_augment(features, np.random.default_rng(2))
  time_mask, freq_mask = augment.spec_augment_masks(
      np.random.default_rng(2), 8, 49, 40
  )
  np.testing.assert_array_equal(
      out, features * time_mask[:, :, None] * freq_mask[:, None, :]
  )
  assert out.shape == features.shape


def test_window_longer_than_the_clip_puts_the_clip_at_its_end():
  rng = np.random.default_rng(0)
  clips = rng.uniform(-0.5, 0.5, (3, 400)).astype(np.float32)
  out = augment.augment_batch(
      clips, np.zeros(3, bool), [], np.random.default_rng(1),
      augment.AudioAugmentation(time_shift_ms=0, resample=0.0),
      window_samples=1000)
  assert out.shape == (3, 1000)
  np.testing.assert_array_equal(out[:, 600:], clips)
  assert not out[:, :600].any()
  with pytest.raises(ValueError, match='window_samples=300, expected at '
                     'least the clip length 400'):
    augment.augment_batch(clips, np.zeros(3, bool), [],
                          np.random.default_rng(1), window_samples=300)
