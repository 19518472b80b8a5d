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
