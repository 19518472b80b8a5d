"""Device augmentation: exact against the host, equal to it in distribution.

The host (kws_jax.data.augment) and the device (kws_jax.data.device_augment)
draw from different generators, so whole batches are compared with
two-sample tests over thousands of rows (fixed seeds: deterministic).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from kws_jax.data import augment
from kws_jax.data import device_augment as da
from kws_jax.data.augment import AudioAugmentation, SpecAugment

# Small clips keep the tests fast, as in test_data_augment: 0.2 s at 10 kHz,
# time shift of 20 ms (200 samples), in a 0.26 s window.
RATE = 10000
CLIP = 2000
WINDOW = 2600
ROWS = 4000
P_MIN = 1e-3  # two-sample tests pass above this p-value

augment_audio = jax.jit(da.augment_audio,
                        static_argnames=('config', 'foreground_samples'))
stretch_and_shift = jax.jit(da.stretch_and_shift)
stretched_lengths = jax.jit(da.stretched_lengths, static_argnums=1)


def config(**overrides) -> AudioAugmentation:
  return AudioAugmentation(**{'sample_rate': RATE, 'time_shift_ms': 20.0,
                              **overrides})


def place(clips: np.ndarray, window: int = WINDOW) -> np.ndarray:
  """[B, N] clips at the end of zero [B, W] windows, as the host loader."""
  return np.pad(clips, ((0, 0), (window - clips.shape[1], 0)))


def on_device(clips, is_silence, noise, settings, seed, window=WINDOW,
              augment_rows=None):
  """augment_audio of clips placed in windows: numpy [B, W]."""
  rows = len(clips)
  augment_rows = np.ones(rows, bool) if augment_rows is None else augment_rows
  return np.asarray(augment_audio(
      jax.random.key(seed), jnp.asarray(place(clips, window)),
      jnp.asarray(is_silence), jnp.asarray(augment_rows),
      da.noise_bank(noise, window), settings, clips.shape[1]))


def on_host(clips, is_silence, noise, settings, seed, window=WINDOW):
  return augment.augment_batch(clips, is_silence, noise,
                               np.random.default_rng(seed), settings,
                               window_samples=window)


def assert_same_distribution(device, host, what):
  result = stats.ks_2samp(device, host)
  assert result.pvalue > P_MIN, (
      f'{what}: KS statistic {result.statistic:.4f}, p={result.pvalue:.2g}; '
      f'device mean {np.mean(device):.5g}, host {np.mean(host):.5g}')


def assert_same_rate(device, host, what):
  """Two proportions (boolean arrays) within 4 standard errors."""
  pooled = (device.sum() + host.sum()) / (len(device) + len(host))
  error = np.sqrt(pooled * (1 - pooled) * (1 / len(device) + 1 / len(host)))
  assert abs(device.mean() - host.mean()) < 4 * max(error, 1e-9), (
      f'{what}: device {device.mean():.4f}, host {host.mean():.4f}')


# -- Exact parts -------------------------------------------------------------

FACTORS = (0.85, 0.8501, 0.9, 0.93, 0.97, 0.9995, 0.9999, 1.0, 1.0001,
           1.0004, 1.0005, 1.03, 1.08, 1.1, 1.125, 1.1499, 1.15)


def test_stretched_lengths_are_exact():
  factors = np.concatenate([np.linspace(0.85, 1.15, 3001), FACTORS]
                           ).astype(np.float32)
  for length in (101, 2000, 2001, 16000):
    expected = [int(length * float(factor)) for factor in factors]
    np.testing.assert_array_equal(
        stretched_lengths(jnp.asarray(factors), length), expected)
  # float32 arithmetic would round 2000 * float32(1.15) = 2299.99995 up.
  assert float(np.float32(2000) * np.float32(1.15)) == 2300.0
  assert int(stretched_lengths(jnp.float32([1.15]), 2000)[0]) == 2299


@pytest.mark.parametrize('length', [101, 2000, 2001])
def test_stretch_matches_host(length):
  factors = np.float32(FACTORS)
  audio = np.random.default_rng(length).uniform(-1, 1, length
                                                ).astype(np.float32)
  lengths = stretched_lengths(jnp.asarray(factors), length)
  # Odd and even differences L - N, and L == N for factors other than 1.
  differences = np.asarray(lengths) - length
  if length == 2000:
    assert {d % 2 for d in differences} == {0, 1}
    assert np.sum(differences == 0) >= 3
  out = np.asarray(stretch_and_shift(
      jnp.tile(audio, (len(factors), 1)), lengths,
      jnp.zeros(len(factors), jnp.int32)))
  for row, factor in enumerate(factors):
    np.testing.assert_allclose(out[row], augment.stretch(audio, float(factor)),
                               atol=1e-6, err_msg=f'factor {factor}')


@pytest.mark.parametrize('factor', [1.0, 0.9, 1.1])
def test_shift_matches_host(factor):
  shifts = np.array([-200, -37, -1, 0, 1, 5, 199, 1999, -1999])
  audio = np.random.default_rng(0).uniform(-1, 1, CLIP).astype(np.float32)
  lengths = stretched_lengths(jnp.full(len(shifts), factor, jnp.float32),
                                 CLIP)
  out = np.asarray(stretch_and_shift(
      jnp.tile(audio, (len(shifts), 1)), lengths, jnp.asarray(shifts)))
  stretched = augment.stretch(audio, float(np.float32(factor)))
  for row, shift in enumerate(shifts):
    np.testing.assert_allclose(out[row], augment.time_shift(stretched, shift),
                               atol=1e-6, err_msg=f'shift {shift}')


def test_apply_places_clip_mixes_noise_and_clips():
  rng = np.random.default_rng(1)
  clips = rng.uniform(-0.9, 0.9, (5, CLIP)).astype(np.float32)
  noise = [rng.uniform(-3, 3, n).astype(np.float32) for n in (2700, 4000)]
  factors = jnp.float32([1.1, 0.9, 1.0, 1.05, 1.0])
  draws = da.Draws(
      factors=factors, lengths=stretched_lengths(factors, CLIP),
      volumes=jnp.float32([1.0, 0.8, 0.0, 1.2, 1.0]),
      shifts=jnp.int32([10, -150, 0, 3, 0]),
      noise_index=jnp.int32([0, 1, 1, 0, 1]),
      noise_offset=jnp.int32([99, 0, 1399, 5, 7]),
      noise_volume=jnp.float32([0.0, 0.05, 0.1, 0.5, 0.0]))
  augment_rows = np.array([True, True, True, True, False])
  windows = place(clips)
  out = np.asarray(jax.jit(da.apply, static_argnums=4)(
      jnp.asarray(windows), jnp.asarray(augment_rows),
      da.noise_bank(noise, WINDOW), draws, CLIP))
  for row in range(4):
    expected = np.zeros(WINDOW, np.float32)
    factor = float(draws.factors[row])
    assert int(CLIP * factor) == int(draws.lengths[row])
    volume = np.float32(draws.volumes[row])
    if volume:
      expected[-CLIP:] = augment.time_shift(
          augment.stretch(clips[row], factor) * volume, int(draws.shifts[row]))
    start = int(draws.noise_offset[row])
    expected += (np.float32(draws.noise_volume[row]) *
                 noise[int(draws.noise_index[row])][start:start + WINDOW])
    np.testing.assert_allclose(out[row], np.clip(expected, -1, 1), atol=1e-6,
                               err_msg=f'row {row}')
  assert np.abs(out[3]).max() == 1.0  # clipped
  np.testing.assert_array_equal(out[4], windows[4])  # not augmented


def test_rows_not_augmented_are_unchanged_and_silence_has_no_foreground():
  rng = np.random.default_rng(2)
  rows = 64
  loud = rng.uniform(-3, 3, (rows, WINDOW)).astype(np.float32)  # any values
  is_silence = np.arange(rows) % 3 == 0
  augment_rows = np.arange(rows) % 4 != 0
  noise = [rng.uniform(-1, 1, 3 * WINDOW).astype(np.float32)]
  out = np.asarray(augment_audio(
      jax.random.key(0), jnp.asarray(loud), jnp.asarray(is_silence),
      jnp.asarray(augment_rows), da.noise_bank(noise, WINDOW),
      config(background_volume=2.0), CLIP))
  np.testing.assert_array_equal(out[~augment_rows], loud[~augment_rows])
  assert out[augment_rows].min() >= -1 and out[augment_rows].max() <= 1
  assert np.any(np.abs(out[augment_rows]) == 1.0)  # some were clipped
  # Without background, silence rows are zeros and the context stays zeros.
  quiet = np.asarray(augment_audio(
      jax.random.key(0), jnp.asarray(place(loud[:, :CLIP] / 4)),
      jnp.asarray(is_silence), jnp.ones(rows, bool), da.noise_bank([], WINDOW),
      config(), CLIP))
  assert not quiet[is_silence].any()
  assert not quiet[:, :WINDOW - CLIP].any()
  assert np.all(np.abs(quiet[~is_silence]).max(axis=1) > 0)


def test_jitted_output_is_a_function_of_the_key():
  rng = np.random.default_rng(3)
  clips = rng.uniform(-0.5, 0.5, (16, CLIP)).astype(np.float32)
  noise = [rng.uniform(-1, 1, 3 * WINDOW).astype(np.float32)]
  silence = np.arange(16) % 4 == 0
  first = on_device(clips, silence, noise, config(), 7)
  np.testing.assert_array_equal(first, on_device(clips, silence, noise,
                                                 config(), 7))
  assert not np.array_equal(first, on_device(clips, silence, noise, config(),
                                             8))
  assert first.shape == (16, WINDOW) and first.dtype == np.float32


@pytest.mark.parametrize('call, message', [
    (lambda bank: da.augment_audio(
        jax.random.key(0), jnp.zeros((2, 100)), jnp.zeros(2, bool),
        jnp.ones(2, bool), bank, config(), 200),
     'foreground_samples=200, expected 1 to the window length W=100'),
    (lambda bank: da.augment_audio(
        jax.random.key(0), jnp.zeros((2, 100)), jnp.zeros(3, bool),
        jnp.ones(2, bool), bank, config(), 50),
     r'is_silence of shape \(3,\), expected \(2,\)'),
    (lambda bank: da.augment_audio(
        jax.random.key(0), jnp.zeros(100), jnp.zeros(2, bool),
        jnp.ones(2, bool), bank, config(), 50),
     r'audio of shape \(100,\), expected \[batch, window\]'),
    (lambda bank: da.augment_audio(
        jax.random.key(0), jnp.zeros((2, 500)), jnp.zeros(2, bool),
        jnp.ones(2, bool), bank, config(), 50),
     'noise: a background recording of 300 samples, expected more than the '
     'window length W=500'),
    (lambda bank: da.noise_bank([np.zeros(300), np.zeros(100)], 100),
     'a background recording of 100 samples, expected more than '
     'window_samples=100'),
    (lambda bank: da.DeviceAugmentation(config(), 100, SpecAugment()),
     'expected both or neither'),
])
def test_bad_inputs_are_named(call, message):
  bank = da.noise_bank([np.zeros(300, np.float32)], 200)
  with pytest.raises(ValueError, match=message):
    call(bank)


# -- Equal in distribution ---------------------------------------------------


def ramp_noise():
  """Two ramps whose crop reveals recording, offset and volume (see fit)."""
  return [np.linspace(0.2, 0.4, 3000, dtype=np.float32),
          np.linspace(0.6, 0.9, 5000, dtype=np.float32)]


def fit_background(out, noise):
  """(mixed bool, index, offset, volume) of silence rows v * crop of a ramp."""
  out = out.astype(np.float64)
  i = np.arange(out.shape[1])
  slope = ((out - out.mean(1, keepdims=True)) @ (i - i.mean())
           / np.sum((i - i.mean())**2))
  intercept = out.mean(1) - slope * i.mean()
  mixed = np.abs(out).max(axis=1) > 0
  steps = np.array([(float(r[-1]) - r[0]) / (len(r) - 1) for r in noise])
  firsts = np.array([r[0] for r in noise], np.float64)
  # intercept / slope = first / step + offset: 2999 + o or 9998 + o.
  ratio = intercept[mixed] / slope[mixed]
  index = (ratio > 6000).astype(int)
  offset = np.round(ratio - firsts[index] / steps[index]).astype(int)
  volume = slope[mixed] / steps[index]
  return mixed, index, offset, volume


def test_background_draws_match_host():
  noise = ramp_noise()
  silence = np.ones(ROWS, bool)
  clips = np.zeros((ROWS, CLIP), np.float32)
  results = {}
  for name, run in (('device', on_device), ('host', on_host)):
    out = run(clips, silence, noise, config(), 11)
    results[name] = fit_background(out, noise)
  device, host = results['device'], results['host']
  assert_same_rate(device[0], host[0], 'rows with background')
  assert abs(device[0].mean() - 0.8) < 0.03  # background_frequency
  assert_same_distribution(device[3], host[3], 'background volume')
  assert 0 < device[3].min() and device[3].max() < 0.1 * 1.002  # fit error
  assert device[3].mean() == pytest.approx(0.05, abs=0.003)
  assert device[3].var() == pytest.approx(0.1**2 / 12, rel=0.1)
  assert_same_rate(device[1] == 1, host[1] == 1, 'recording chosen')
  for index, length in enumerate((3000, 5000)):
    offsets = [result[2][result[1] == index] for result in (device, host)]
    assert_same_distribution(*offsets, f'offsets in recording {index}')
    assert offsets[0].min() >= 0 and offsets[0].max() <= length - WINDOW - 1
    assert offsets[0].max() >= 0.95 * (length - WINDOW)


def click_positions(out, clicks=1):
  """Positions of the `clicks` largest samples of each row, ascending."""
  return np.sort(np.argsort(out, axis=1)[:, -clicks:], axis=1)


def test_time_shift_matches_host():
  clips = np.zeros((ROWS, CLIP), np.float32)
  clips[:, CLIP // 2] = 1.0
  settings = config(resample=0.0)
  shifts = {}
  for name, run in (('device', on_device), ('host', on_host)):
    out = run(clips, np.zeros(ROWS, bool), [], settings, 12)
    shifts[name] = click_positions(out)[:, 0] - (WINDOW - CLIP // 2)
  assert shifts['device'].min() == -200 and shifts['device'].max() == 199
  assert shifts['device'].mean() == pytest.approx(-0.5, abs=5)
  assert_same_distribution(shifts['device'], shifts['host'], 'time shift')


def test_stretch_factors_match_host():
  clips = np.zeros((ROWS, CLIP), np.float32)
  clips[:, CLIP // 2 - 300] = 1.0
  clips[:, CLIP // 2 + 300] = 1.0
  settings = config(time_shift_ms=0.0)
  ratios = {}
  for name, run in (('device', on_device), ('host', on_host)):
    peaks = click_positions(run(clips, np.zeros(ROWS, bool), [], settings, 13),
                            clicks=2)
    ratios[name] = (peaks[:, 1] - peaks[:, 0]) / 600
  assert ratios['device'].min() == pytest.approx(0.85, abs=0.01)
  assert ratios['device'].max() == pytest.approx(1.15, abs=0.01)
  assert_same_distribution(ratios['device'], ratios['host'], 'stretch')


def test_drawn_factors_and_volumes():
  draws = jax.jit(da.draw, static_argnums=(3, 4, 5))(
      jax.random.key(14), jnp.arange(ROWS) % 5 == 0, da.noise_bank([], WINDOW),
      config(volume_resample=0.2), CLIP, WINDOW)
  factors = np.asarray(draws.factors)
  assert 0.85 <= factors.min() < 0.851 and 1.149 < factors.max() < 1.15
  assert_same_distribution(factors, np.random.default_rng(0).uniform(
      0.85, 1.15, ROWS), 'stretch factor')
  np.testing.assert_array_equal(draws.lengths, (CLIP * factors.astype(
      np.float64)).astype(int))
  volumes = np.asarray(draws.volumes)
  assert not volumes[::5].any()
  assert_same_distribution(volumes[np.arange(ROWS) % 5 != 0],
                           np.random.default_rng(1).uniform(0.8, 1.2, ROWS),
                           'foreground volume')


def test_foreground_volume_matches_host():
  clips = np.full((ROWS, CLIP), 0.5, np.float32)
  settings = config(resample=0.0, time_shift_ms=0.0, volume_resample=0.2)
  gains = {name: run(clips, np.zeros(ROWS, bool), [], settings, 15)[:, -1] / 0.5
           for name, run in (('device', on_device), ('host', on_host))}
  assert 0.8 <= gains['device'].min() and gains['device'].max() <= 1.2
  assert_same_distribution(gains['device'], gains['host'], 'foreground volume')


def test_outputs_of_a_fixed_input_match_host():
  """Everything at kws_streaming's defaults: a click over background noise."""
  rng = np.random.default_rng(16)
  clips = np.zeros((ROWS, CLIP), np.float32)
  clips[:, 700] = 0.9
  clips[:, 701:1300] = 0.2 * np.sin(np.arange(599) / 5)
  noise = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (4000, 9000)]
  silence = np.arange(ROWS) % 10 == 0
  outputs = {name: run(clips, silence, noise, config(), 17)
             for name, run in (('device', on_device), ('host', on_host))}
  for name, out in outputs.items():
    assert out.shape == (ROWS, WINDOW) and np.abs(out).max() <= 1.0, name
  device, host = outputs['device'], outputs['host']
  for rows, what in ((~silence, 'words'), (silence, 'silence')):
    assert_same_distribution(np.sum(device[rows]**2, axis=1),
                             np.sum(host[rows]**2, axis=1), f'{what} energy')
    assert_same_distribution(np.abs(device[rows, :WINDOW - CLIP]).mean(1),
                             np.abs(host[rows, :WINDOW - CLIP]).mean(1),
                             f'{what} context level')
  assert_same_distribution(click_positions(device[~silence])[:, 0],
                           click_positions(host[~silence])[:, 0],
                           'click position')


# -- SpecAugment --------------------------------------------------------------

MASK_CONFIGS = [SpecAugment(), SpecAugment(1, 3, 3, 2),
                SpecAugment(0, 10, 2, 0), SpecAugment(1, 60, 1, 5)]


@pytest.mark.parametrize('settings', MASK_CONFIGS)
def test_spec_augment_masks_match_host(settings):
  frames, bins = 49, 40
  device = jax.jit(da.spec_augment_masks, static_argnums=(1, 2, 3, 4))(
      jax.random.key(18), ROWS, frames, bins, settings)
  host = augment.spec_augment_masks(np.random.default_rng(18), ROWS, frames,
                                    bins, settings)
  for axis, count, max_size, length in (
      (0, settings.time_masks, settings.time_mask_max_size, frames),
      (1, settings.frequency_masks, settings.frequency_mask_max_size, bins)):
    masks = np.asarray(device[axis]), host[axis]
    assert masks[0].shape == (ROWS, length)
    assert set(np.unique(masks[0])) <= {0.0, 1.0}
    masked = [(mask == 0).sum(axis=1) for mask in masks]
    widest = count * max(min(max_size, length + 1) - 1, 0)
    assert masked[0].max() == widest
    if not widest:
      continue
    assert_same_distribution(*masked, f'masked count, axis {axis}')
    rates = [(mask == 0).mean(axis=0) for mask in masks]
    np.testing.assert_allclose(rates[0], rates[1], atol=0.03)
    assert len({tuple(row) for row in masks[0][:50]}) > 10  # per example
    if count == 1:  # width and start are visible
      starts = [np.argmax(mask == 0, axis=1)[m > 0]
                for mask, m in zip(masks, masked)]
      assert_same_distribution(*starts, f'mask start, axis {axis}')
