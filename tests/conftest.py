"""Shared test fixtures: small synthetic signals made with numpy."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# The suite compiles over a thousand small functions and runs each a few
# times: XLA's backend optimizations cost more compile time than they save
# (the suite took 13 instead of 24 minutes on 2 cores without them).
# Subprocesses inherit the flag.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_backend_optimization_level=0').strip()

# One persistent XLA compilation cache for the whole run, shared by the xdist
# workers and the command-line subprocesses the tests start (they inherit
# the environment): the same small models, and the same single operations
# run eagerly, are compiled in many tests (every compilation is kept: 11%
# less CPU time for tests/test_layers.py). The controller process makes it
# before it starts the workers and removes it at exit; a cached executable
# is keyed by its whole program and the compiler's version and flags, so it
# never stands in for another one.
if 'PYTEST_XDIST_WORKER' not in os.environ and (
    'JAX_COMPILATION_CACHE_DIR' not in os.environ):
  _CACHE = tempfile.mkdtemp(prefix='kws_jax_test_xla_cache_')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import numpy as np
import pytest

SAMPLE_RATE = 16000


def chirp(seconds: float = 1.0, f0: float = 100.0, f1: float = 7000.0,
          amplitude: float = 0.5) -> np.ndarray:
  """Linear sweep from f0 to f1 Hz."""
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
  return amplitude * np.sin(phase)


def speech_like(rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
  """Voiced syllables: a gliding harmonic source shaped by three formants."""
  n = int(seconds * SAMPLE_RATE)
  t = np.arange(n) / SAMPLE_RATE
  f0 = 110 + 40 * np.sin(2 * np.pi * rng.uniform(1, 3) * t) + rng.uniform(0, 60)
  phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
  formants = rng.uniform([300, 900, 2200], [800, 2000, 3200])
  signal = np.zeros(n)
  for harmonic in range(1, 40):
    freq = harmonic * f0
    gain = sum(np.exp(-((freq - f) / 150.0)**2) for f in formants) + 0.02
    signal += np.where(freq < SAMPLE_RATE / 2, gain, 0) * np.sin(
        harmonic * phase) / harmonic
  syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None)**2
  return 0.3 * signal * syllables / np.max(np.abs(signal))


def pytest_collection_modifyitems(config, items):
  """Tests marked ``long`` run first: xdist deals them out to the workers
  before the short ones, which then fill in, so both workers finish
  together instead of one waiting on a long test dealt out last. ``make
  test`` deals out whole files (``--dist loadfile``: a module's fixtures
  are built once), the files of long tests first."""
  del config
  items.sort(key=lambda item: item.get_closest_marker('long') is None)


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(1234)
