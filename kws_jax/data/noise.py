"""Colored noise: white, pink (1/f power) and brown (1/f^2 power)."""

from __future__ import annotations

import numpy as np

COLORS = ('white', 'pink', 'brown')


def colored_noise(
    color: str, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
  """Gaussian noise with a power spectrum flat, ~1/f or ~1/f^2.

  Shaped in the frequency domain from white noise, so it is stationary over
  the whole length (no random-walk drift for brown noise).

  Returns:
    float32 [num_samples] with zero mean and unit RMS.
  """
  if color not in COLORS:
    raise ValueError(f'noise color {color!r}, expected one of {COLORS}')
  white = rng.standard_normal(num_samples)
  if color == 'white':
    noise = white
  else:
    spectrum = np.fft.rfft(white)
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0  # The DC bin is removed below.
    exponent = 0.5 if color == 'pink' else 1.0  # Amplitude ~ f^-exponent.
    spectrum /= frequencies**exponent
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, num_samples)
  noise = noise - noise.mean()
  return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(
      np.float32
  )


# Noises that no training recipe here mixes in: for evaluation under noise
# kinds absent from training (kws_jax.data.acoustics.apply_to_stream).
EVALUATION_KINDS = ('hum', 'chords', 'clatter')


def evaluation_noise(kind: str, num_samples: int, rng: np.random.Generator,
                     sample_rate: int = 16000) -> np.ndarray:
  """A non-speech noise of a kind the training noise does not contain.

  hum:     mains hum (50 or 60 Hz and its first 8 harmonics, random levels)
           over a fan's band-limited rumble;
  chords:  music-like: three-note chords of decaying harmonic tones, a new
           chord every 0.25-1 s;
  clatter: dishes and keys: decaying noise bursts at random times.

  Returns:
    float32 [num_samples] with zero mean and unit RMS.
  """
  if kind not in EVALUATION_KINDS:
    raise ValueError(f'noise kind {kind!r}, expected one of {EVALUATION_KINDS}')
  t = np.arange(num_samples) / sample_rate
  out = np.zeros(num_samples)
  if kind == 'hum':
    mains = rng.choice([50.0, 60.0])
    for harmonic in range(1, 10):
      out += rng.uniform(0.05, 1.0) / harmonic * np.sin(
          2 * np.pi * mains * harmonic * t + rng.uniform(0, 2 * np.pi))
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequencies = np.fft.rfftfreq(num_samples, 1 / sample_rate)
    spectrum *= np.exp(-frequencies / rng.uniform(200, 800))
    rumble = np.fft.irfft(spectrum, num_samples)
    out = out / np.std(out) + rng.uniform(0.3, 1.0) * rumble / np.std(rumble)
  elif kind == 'chords':
    start = 0
    while start < num_samples:
      length = int(rng.uniform(0.25, 1.0) * sample_rate)
      span = np.arange(min(length * 3, num_samples - start)) / sample_rate
      envelope = np.exp(-span * rng.uniform(2, 8))
      root = 110 * 2 ** (rng.integers(0, 24) / 12)
      for step in rng.choice([0, 3, 4, 7, 10, 12], 3, replace=False):
        pitch = root * 2 ** (step / 12)
        for harmonic in range(1, 5):
          out[start:start + len(span)] += (envelope / harmonic**1.5) * np.sin(
              2 * np.pi * pitch * harmonic * span)
      start += length
  else:
    for _ in range(max(1, int(num_samples / sample_rate * rng.uniform(1, 4)))):
      at = int(rng.integers(num_samples))
      span = min(int(rng.uniform(0.02, 0.3) * sample_rate), num_samples - at)
      burst = rng.standard_normal(span) * np.exp(
          -np.arange(span) / (span / rng.uniform(3, 8)))
      out[at:at + span] += rng.uniform(0.2, 1.0) * burst
    out += 0.01 * rng.standard_normal(num_samples)
  out = out - out.mean()
  return (out / max(float(np.sqrt(np.mean(out**2))), 1e-12)).astype(np.float32)
