"""The micro frontend equals TensorFlow's audio_microfrontend op and streams exactly.

The reference is the op TensorFlow ships (TFLM's C frontend), on int16 audio:
eSpeak NG speech, speech-like signals, noise, tones and a chirp from -90 dBFS
to full scale, silence and clipping square waves. The JAX layer emulates the
integer pipeline, so the tolerance is zero: every value equal.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.experimental.microfrontend.python.ops import (
    audio_microfrontend_op)

from conftest import chirp, speech_like
from experiments.configs import ds_cnn_micro
from kws_jax import config as kws_config
from kws_jax.data import audio as audio_lib
from kws_jax.data import espeak
from kws_jax.layers import base, count_params
from kws_jax.micro_frontend import (KWS_STREAMING_SCALE, MicroFrontend,
                                    micro_frontend_config, to_int16)
from kws_jax.models import build_model, frontend_from_config
from kws_jax.testing import check_streaming_contract
from kws_jax.train import load_run, train_and_evaluate
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import

# Measured agreement with the op, asserted: the largest difference in output
# units (the op's uint16 values) and the share of exactly equal values.
MAX_DIFF = 0.0
EXACT_SHARE = 1.0

RAW = dict(out_scale=1.0)  # the op's units
CONFIGS = {
    'default_30ms_10ms': {},
    'step_20ms': dict(window_stride_ms=20.0),
    '8khz_25ms_32ch': dict(sample_rate=8000, window_size_ms=25.0,
                           num_channels=32, upper_band_limit=3800.0),
    'no_pcan_64ch': dict(enable_pcan=False, num_channels=64,
                         lower_band_limit=60.0, upper_band_limit=7900.0),
    'no_log_tuned': dict(enable_log=False, smoothing_bits=8, gain_bits=18,
                         even_smoothing=0.1, odd_smoothing=0.2,
                         min_signal_remaining=0.5, pcan_strength=0.7,
                         pcan_offset=20.0),
    'semicausal_20ms': dict(window_stride_ms=20.0, padding='semicausal'),
}


def tf_features(samples: np.ndarray, frontend: MicroFrontend) -> np.ndarray:
  """The op on int16 ``samples [n]``: ``[frames, channels]`` float32, out_scale 1."""
  if frontend.padding == 'semicausal':
    samples = np.pad(samples, (frontend.window_samples -
                               frontend.stride_samples, 0))
  return audio_microfrontend_op.audio_microfrontend(
      tf.constant(samples, tf.int16), sample_rate=frontend.sample_rate,
      window_size=int(frontend.window_size_ms),
      window_step=int(frontend.window_stride_ms),
      num_channels=frontend.num_channels,
      upper_band_limit=frontend.upper_band_limit,
      lower_band_limit=frontend.lower_band_limit,
      smoothing_bits=frontend.smoothing_bits,
      even_smoothing=frontend.even_smoothing,
      odd_smoothing=frontend.odd_smoothing,
      min_signal_remaining=frontend.min_signal_remaining,
      enable_pcan=frontend.enable_pcan, pcan_strength=frontend.pcan_strength,
      pcan_offset=frontend.pcan_offset, gain_bits=frontend.gain_bits,
      enable_log=frontend.enable_log, scale_shift=frontend.scale_shift,
      out_scale=1, out_type=tf.float32).numpy()


def spoken(text: str, voice: str, pitch: int) -> np.ndarray:
  speech = audio_lib.resample(espeak.speak(text, voice=voice, pitch=pitch),
                              espeak.SAMPLE_RATE, 16000)
  clip = np.zeros(16000)
  clip[2000:2000 + len(speech[:14000])] = speech[:14000]
  return clip / np.max(np.abs(clip))


@pytest.fixture(scope='module')
def clips() -> dict[str, np.ndarray]:
  """One second at 16 kHz of each test signal, float in [-1, 1)."""
  rng = np.random.default_rng(3)
  t = np.arange(16000) / 16000
  yes, seven = spoken('yes', 'en-us', 50), spoken('seven', 'en-us-nyc', 25)

  def db(level):
    return 10**(level / 20)

  signals = {
      'yes_-50dB': db(-50) * yes, 'yes_-20dB': db(-20) * yes,
      'yes_0dB': 0.9999 * yes, 'seven_-6dB': db(-6) * seven,
      'yes_in_noise': 0.3 * yes + db(-40) * rng.standard_normal(16000),
      'speech_like': speech_like(rng),
      'noise_-90dB': db(-90) * rng.standard_normal(16000),
      'noise_-50dB': db(-50) * rng.standard_normal(16000),
      'noise_-10dB': db(-10) * rng.standard_normal(16000),
      'tone_300Hz_-60dB': db(-60) * np.sin(2 * np.pi * 300 * t),
      'tone_1kHz_-10dB': db(-10) * np.sin(2 * np.pi * 1000 * t),
      'tone_3.5kHz_0dB': 0.9999 * np.sin(2 * np.pi * 3500 * t),
      'chirp': chirp(1.0, 50, 7900, 0.9),
      'silence': np.zeros(16000),
      'square_full_scale': np.where(np.sin(2 * np.pi * 440 * t) < 0, -1.0,
                                    0.99999),
  }
  return {name: np.clip(x, -1.0, 0.99999).astype(np.float32)
          for name, x in signals.items()}


def batch_for(frontend: MicroFrontend, clips: dict[str, np.ndarray]
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
  """Names, float audio ``[B, rate]`` and its int16 samples."""
  names = list(clips)
  audio = np.stack([clips[n] for n in names])
  if frontend.sample_rate != 16000:
    audio = np.stack([audio_lib.resample(a, 16000, frontend.sample_rate)
                      for a in audio])
    audio = np.clip(audio, -1.0, 0.99999).astype(np.float32)
  samples = np.trunc(audio.astype(np.float64) * 32768).astype(np.int16)
  return names, audio, samples


def assert_matches_op(features: np.ndarray, frontend: MicroFrontend,
                      samples: np.ndarray, names: list[str]) -> None:
  diffs = []
  for row, name in enumerate(names):
    expected = tf_features(samples[row], frontend)
    assert features[row].shape == expected.shape, name
    diff = np.abs(features[row] - expected)
    assert diff.max() <= MAX_DIFF, (
        f'{name}: {np.mean(diff > 0):.2%} of the values differ, by up to '
        f'{diff.max()}')
    diffs.append(diff)
  assert np.mean(np.concatenate(diffs) == 0) >= EXACT_SHARE


# -- Agreement with the op ----------------------------------------------------


@pytest.mark.parametrize('setting', list(CONFIGS))
def test_full_window_equals_the_tensorflow_op(clips, setting):
  frontend = MicroFrontend(**CONFIGS[setting], **RAW)
  names, audio, samples = batch_for(frontend, clips)
  features = np.asarray(frontend.apply({}, jnp.asarray(audio)))
  assert_matches_op(features, frontend, samples, names)


@pytest.mark.parametrize('setting', ['default_30ms_10ms', 'semicausal_20ms'])
def test_stream_equals_the_tensorflow_op(clips, setting):
  frontend = MicroFrontend(**CONFIGS[setting], **RAW)
  names, audio, samples = batch_for(frontend, clips)
  # Two blocks per step: steps of several frames take the warm-up too.
  _, stream = jax.jit(lambda x: base.scan_steps(
      frontend, {}, x, blocks_per_step=2))(jnp.asarray(audio))
  features = np.asarray(stream)[:, frontend.lookback:]
  frames = tf_features(samples[0], frontend).shape[0]
  assert_matches_op(features[:, :frames], frontend, samples, names)


def test_default_features_are_kws_streamings_10_over_256(clips):
  frontend = MicroFrontend()
  assert frontend.out_scale == KWS_STREAMING_SCALE == 0.0390625
  audio = jnp.asarray(batch_for(frontend, clips)[1])
  scaled = np.asarray(frontend.apply({}, audio))
  raw = np.asarray(dataclasses.replace(frontend, out_scale=1.0).apply(
      {}, audio))
  np.testing.assert_array_equal(scaled, raw * np.float32(10 / 256))
  assert raw.max() > 300  # speech well above the noise floor


def test_int16_conversion_is_kws_streamings_cast():
  audio = np.concatenate([
      np.random.default_rng(0).uniform(-1, 1, 1000),
      [-1.0, -0.5, -1e-6, 0.0, 1e-6, 0.5, 0.99999]]).astype(np.float32)
  expected = tf.cast(tf.constant(audio) * 32768, tf.int16).numpy()
  np.testing.assert_array_equal(np.asarray(to_int16(jnp.asarray(audio))),
                                expected)
  # +1.0 saturates here; tf.cast wraps it to -32768.
  assert int(to_int16(jnp.float32(1.0))) == 32767


def test_non_finite_samples_give_nan_only_in_their_windows(clips):
  frontend = MicroFrontend(**RAW)
  audio = batch_for(frontend, clips)[1]  # the shapes compiled above
  broken = audio.copy()
  broken[0, 8000] = np.nan  # in windows 48, 49 and 50 (30 ms every 10 ms)
  broken[1, 100] = np.inf  # in window 0
  clean = np.asarray(frontend.apply({}, jnp.asarray(audio)))
  features = np.asarray(frontend.apply({}, jnp.asarray(broken)))
  for row, frames in ((0, [48, 49, 50]), (1, [0])):
    nan_frames = np.flatnonzero(np.isnan(features[row]).any(axis=-1))
    np.testing.assert_array_equal(nan_frames, frames)
    assert np.isnan(features[row, frames]).all()
  np.testing.assert_array_equal(features[0, :48], clean[0, :48])
  np.testing.assert_array_equal(features[2:], clean[2:])


# -- The streaming contract ---------------------------------------------------


def test_streaming_contract():
  """30 ms / 10 ms: two warm-up frames that leave the noise estimate alone."""
  frontend = MicroFrontend()
  assert frontend.lookback == 2
  audio = 0.1 * jax.random.normal(jax.random.key(0), (2, 12 * 160))
  report = check_streaming_contract(frontend, {}, audio, check_grads=False)
  assert report.output_diff == 0.0
  assert report.full_shape == (2, 10, 40)
  assert report.stream_shape == (2, 12, 40)
  state = frontend.init_state(2)
  assert {k: (v.shape, v.dtype) for k, v in state.items()} == {
      'samples': ((2, 320), jnp.float32), 'noise': ((2, 40), jnp.uint32),
      'frames': ((2,), jnp.int32)}


@pytest.mark.parametrize('padding, lookback, state, frames', [
    ('valid', 1, 320, 49), ('semicausal', 0, 160, 50)])
def test_geometry_of_30ms_windows_every_20ms(padding, lookback, state, frames):
  frontend = MicroFrontend(window_stride_ms=20.0, padding=padding)
  assert (frontend.window_samples, frontend.stride_samples,
          frontend.fft_size) == (480, 320, 512)
  assert frontend.lookback == lookback
  assert frontend.init_state(1)['samples'].shape == (1, state)
  assert frontend.output_length(16000) == frames  # of a 1 s clip
  assert frontend.receptive_field == float('inf')  # the noise estimate


# -- Bad settings and inputs --------------------------------------------------


@pytest.mark.parametrize('settings, fragment', [
    (dict(sample_rate=0), 'sample_rate is 0, expected a positive int'),
    (dict(window_size_ms=25.5), 'window_size_ms is 25.5, expected a positive '
     'whole number of milliseconds'),
    (dict(sample_rate=11025), 'window_size_ms is 30.0, expected a duration '
     'that is a whole number of samples at 11025 Hz'),
    (dict(window_stride_ms=40.0), 'window_stride_ms is 40.0, expected at most '
     'the window (30 ms)'),
    (dict(window_size_ms=0.0), 'window_size_ms is 0.0'),
    (dict(num_channels=257), 'num_channels is 257, expected an int from 1 to '
     '256 (the FFT of 512 has 257 bins)'),
    (dict(num_channels=0), 'num_channels is 0'),
    (dict(upper_band_limit=8500.0), 'upper_band_limit is 8500.0, expected at '
     'most the Nyquist frequency (8000 Hz)'),
    (dict(sample_rate=8000), 'upper_band_limit is 7500.0, expected at most '
     'the Nyquist frequency (4000 Hz)'),
    (dict(lower_band_limit=8000.0), 'lower_band_limit is 8000.0, expected 0 '
     '<= lower_band_limit < upper_band_limit (7500.0)'),
    (dict(upper_band_limit=8000.0), 'upper_band_limit is 8000.0, expected a '
     'band whose filters end below the last FFT bin (256)'),
    (dict(smoothing_bits=40), 'smoothing_bits is 40, expected an int from 0 '
     'to 31'),
    (dict(even_smoothing=1.5), 'even_smoothing is 1.5, expected a fraction'),
    (dict(min_signal_remaining=-0.1), 'min_signal_remaining is -0.1'),
    (dict(enable_pcan='yes'), "enable_pcan is 'yes', expected a bool"),
    (dict(pcan_offset=0.0), 'pcan_offset is 0.0, expected a positive offset'),
    (dict(gain_bits=40), 'gain_bits is 40, expected an int from 15 to 31'),
    (dict(scale_shift=12), 'scale_shift is 12, expected an int from 0 to 11'),
    (dict(out_scale=0.0), 'out_scale is 0.0, expected a positive factor'),
    (dict(padding='causal'), "padding is 'causal', expected one of 'valid', "
     "'semicausal'"),
])
def test_bad_settings_fail_naming_the_field(settings, fragment):
  with pytest.raises(ValueError) as error:
    MicroFrontend(**settings)
  assert fragment in str(error.value)
  assert str(error.value).startswith('frontend: ')


def test_bad_inputs_fail_naming_what_was_expected():
  frontend = MicroFrontend()
  with pytest.raises(ValueError, match='audio has dtype int16, expected a '
                     'floating dtype'):
    frontend.apply({}, jnp.zeros((1, 16000), jnp.int16))
  with pytest.raises(ValueError, match=r'audio has shape \(16000,\), '
                     r'expected \[batch, samples\]'):
    frontend.apply({}, jnp.zeros(16000))
  with pytest.raises(ValueError, match='audio has 400 samples, expected at '
                     'least one window of 480 samples'):
    frontend.apply({}, jnp.zeros((1, 400)))
  state = frontend.init_state(2)
  with pytest.raises(ValueError, match=r'expected \[batch, n \* 160, \.\.\.\]'):
    frontend.step({}, state, jnp.zeros((2, 100)))
  with pytest.raises(ValueError, match="state\\['noise'\\] has dtype int32, "
                     'expected uint32'):
    frontend.step({}, dict(state, noise=state['noise'].astype(jnp.int32)),
                  jnp.zeros((2, 160)))
  with pytest.raises(ValueError, match='expects audio'):
    frontend.init_state(1, (40,))


# -- Configs, models and training ---------------------------------------------


def test_config_section_holds_exactly_the_fields():
  section = micro_frontend_config(num_channels=32)
  fields = {f.name for f in dataclasses.fields(MicroFrontend)}
  assert set(section.keys()) == fields - {'sample_rate'}
  assert section.name == 'micro' and section.num_channels == 32
  config = kws_config.default_config()
  config.frontend = section
  frontend = frontend_from_config(config)
  assert frontend == MicroFrontend(num_channels=32)
  with pytest.raises(ValueError, match='fft_length is not a field'):
    micro_frontend_config(fft_length=512)
  config.frontend.fft_length = 512
  with pytest.raises(ValueError, match='frontend.fft_length is not a setting '
                     'of the micro frontend'):
    frontend_from_config(config)


def test_ds_cnn_micro_config_is_the_paper_model_on_micro_features():
  model = build_model(ds_cnn_micro.get_config())
  assert model.preprocess == 'micro'
  assert isinstance(model.frontend, MicroFrontend)
  assert model.input_shape == (40,) and model.clip_length == 49
  assert model.step_ms == 20.0
  params = jax.eval_shape(lambda: model.init(jax.random.key(0)))
  assert count_params(params) == 497_412  # as on MFCCs
  # The audio model streams 20 ms blocks through the frontend.
  assert model.audio_model.preprocess == 'raw'
  assert model.audio_model.block_size == 320


@pytest.mark.parametrize('preprocess, frontend, fragment', [
    ('micro', None, "model.preprocess is 'micro', which takes features of the "
     "micro frontend, but frontend.name is 'mfcc'"),
    ('mfcc', 'micro', "model.preprocess is 'mfcc', which takes features of the "
     "mfcc frontend, but frontend.name is 'micro'"),
])
def test_preprocess_needs_its_frontend(preprocess, frontend, fragment):
  config = ds_cnn_micro.get_config()
  if frontend is None:
    config.frontend = kws_config.default_config().frontend
  config.model.preprocess = preprocess
  with pytest.raises(ValueError) as error:
    build_model(config)
  assert fragment in str(error.value)


SMALL = dict(cnn1_filters=6, cnn2_filters='8,8', dw2_kernel_size='(3,3),(5,3)',
             dw2_dilation_rate='(1,1),(2,1)', dw2_strides='(1,1),(1,1)',
             dw2_act="'relu','relu'", cnn2_act="'relu','relu'")


def test_ds_cnn_micro_trains_a_step(tiny_data, tmp_path):  # pylint: disable=redefined-outer-name
  config = tiny_config(tiny_data)
  micro = ds_cnn_micro.get_config()
  config.frontend = micro.frontend
  config.model = micro.model
  config.model.update(SMALL)
  config.schedule.update(how_many_training_steps='1', learning_rate='0.001')
  config.train.update(eval_step_interval=1)
  result = train_and_evaluate(config, str(tmp_path / 'run'), progress=False)
  assert result['steps'] == 1
  assert 0.0 <= result['test_accuracy'] <= 1.0
  _, model, _ = load_run(str(tmp_path / 'run'), 'last')
  assert model.preprocess == 'micro'
  assert model.frontend == MicroFrontend(window_stride_ms=20.0)
