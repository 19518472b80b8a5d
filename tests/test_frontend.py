"""The MFCC frontend equals TensorFlow's tf.signal pipeline and streams exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from conftest import chirp, speech_like
from kws_jax.frontend import MfccFrontend
from kws_jax.testing import check_streaming_contract

SETTINGS = {
    'kws_streaming_default': {},
    'power_64mel_13mfcc': dict(window_size_ms=30.0, window_stride_ms=10.0,
                               mel_num_bins=64, mel_lower_edge_hertz=60.0,
                               mel_upper_edge_hertz=7600.0, dct_num_features=13,
                               fft_magnitude_squared=True),
    'logmel_25ms_fft512': dict(window_size_ms=25.0, window_stride_ms=10.0,
                               fft_length=512, mel_num_bins=32,
                               dct_num_features=0),
    'preemphasis_4khz': dict(preemph=0.97, mel_num_bins=20,
                             mel_upper_edge_hertz=4000.0, dct_num_features=10),
    '8khz': dict(sample_rate=8000, mel_upper_edge_hertz=3800.0),
}


def tensorflow_features(audio: np.ndarray, frontend: MfccFrontend,
                        dtype: tf.DType) -> np.ndarray:
  """The reference: tf.signal ops as kws_streaming's mfcc_tf documents them."""
  x = tf.constant(audio, dtype)
  frames = tf.signal.frame(x, frontend.window_samples, frontend.stride_samples)
  if frontend.preemph:
    a = frontend.preemph
    frames = tf.concat([frames[..., :1] * (1 - a),
                        frames[..., 1:] - a * frames[..., :-1]], axis=-1)
  frames *= tf.signal.hann_window(frontend.window_samples, periodic=True,
                                  dtype=dtype)
  spectrum = tf.abs(tf.signal.rfft(frames, [frontend.fft_size]))
  if frontend.fft_magnitude_squared:
    spectrum = spectrum**2
  mel_matrix = tf.signal.linear_to_mel_weight_matrix(
      frontend.mel_num_bins, frontend.fft_size // 2 + 1,
      frontend.sample_rate, frontend.mel_lower_edge_hertz,
      frontend.mel_upper_edge_hertz, dtype=dtype)
  log_mel = tf.math.log(tf.maximum(tf.tensordot(spectrum, mel_matrix, 1),
                                   tf.cast(frontend.log_epsilon, dtype)))
  if not frontend.dct_num_features:
    return log_mel.numpy()
  mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)
  return mfcc[..., :frontend.dct_num_features].numpy()


def make_signal(kind: str, frontend: MfccFrontend,
                noise_floor_db: float | None) -> np.ndarray:
  """Two clips of one second; ``noise_floor_db`` adds a recording's noise.

  Chirps sweep the band the mel filters analyse.
  """
  rng = np.random.default_rng(7)
  sample_rate = frontend.sample_rate
  if kind == 'noise':
    clips = [0.3 * rng.uniform(-1, 1, sample_rate) for _ in range(2)]
  elif kind == 'chirp':
    top = frontend.mel_upper_edge_hertz
    clips = [chirp(1.0, 100, top), chirp(1.0, top, 300, amplitude=0.1)]
    clips = [np.interp(np.linspace(0, 16000, sample_rate, endpoint=False),
                       np.arange(16000), c) for c in clips]
  else:
    clips = [speech_like(rng) for _ in range(2)]
    clips = [np.interp(np.linspace(0, 16000, sample_rate, endpoint=False),
                       np.arange(16000), c) for c in clips]
  audio = np.stack(clips)
  if noise_floor_db is not None:
    audio += 10**(noise_floor_db / 20) * 0.5 * rng.standard_normal(audio.shape)
  return audio


@pytest.mark.parametrize('dft', ['fft', 'matmul'])
@pytest.mark.parametrize('kind', ['noise', 'chirp', 'speech'])
@pytest.mark.parametrize('setting', list(SETTINGS))
def test_equals_tensorflow_pipeline_in_float64(setting, kind, dft):
  """Same math as TF: in float64 the two agree far below the 1e-4 bound."""
  frontend = MfccFrontend(dft=dft, **SETTINGS[setting])
  audio = make_signal(kind, frontend, noise_floor_db=None)
  expected = tensorflow_features(audio, frontend, tf.float64)
  with jax.enable_x64(True):
    actual = np.asarray(frontend.apply({}, jnp.asarray(audio, jnp.float64)))
  assert actual.dtype == np.float64
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize('dft', ['fft', 'matmul'])
@pytest.mark.parametrize('kind', ['noise', 'chirp', 'speech'])
@pytest.mark.parametrize('setting', list(SETTINGS))
def test_equals_tensorflow_in_float32(setting, kind, dft):
  """float32 against TF float32, on signals with a -30 dB recording floor."""
  frontend = MfccFrontend(dft=dft, **SETTINGS[setting])
  audio = make_signal(kind, frontend, noise_floor_db=-30)
  audio = audio.astype(np.float32)
  expected = tensorflow_features(audio, frontend, tf.float32)
  actual = np.asarray(jax.jit(frontend.apply)({}, jnp.asarray(audio)))
  assert actual.dtype == np.float32
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize('dft', ['fft', 'matmul'])
def test_pure_tones_at_least_as_accurate_as_tensorflow_float32(dft):
  """Without a noise floor the weakest mel bins are float32 rounding noise.

  There no float32 implementation can match another to 1e-4; ours is at least
  as close to the exact (float64) features as TensorFlow's float32 result.
  """
  frontend = MfccFrontend(dft=dft, dct_num_features=0)
  audio = make_signal('chirp', frontend, noise_floor_db=None).astype(np.float32)
  exact = tensorflow_features(audio.astype(np.float64), frontend, tf.float64)
  tf_error = np.abs(tensorflow_features(audio, frontend, tf.float32) - exact)
  ours = np.asarray(jax.jit(frontend.apply)({}, jnp.asarray(audio)))
  assert np.abs(ours - exact).max() <= tf_error.max()


@pytest.mark.parametrize('features, expected', [(20, (3, 49, 20)),
                                                (0, (3, 49, 40)),
                                                (10, (3, 49, 10))])
def test_one_second_gives_49_frames(features, expected):
  frontend = MfccFrontend(dct_num_features=features)
  assert frontend.apply({}, jnp.zeros((3, 16000))).shape == expected
  assert frontend.output_length(16000) == 49
  assert frontend.block_size == 320 and frontend.lookback == 1


@pytest.mark.parametrize('dft', ['fft', 'matmul'])
@pytest.mark.parametrize('setting', list(SETTINGS))
def test_streaming_contract(setting, dft, rng):
  """Streamed frames equal full-window frames to float32 rounding.

  The speech has a -60 dB noise floor, as any recording does. Log features
  amplify rounding in weak mel bins (a batched and a single-frame DFT round
  differently), so the bound is the TensorFlow-parity bound 1e-4; the
  features range over about +-30.
  """
  frontend = MfccFrontend(dft=dft, **SETTINGS[setting])
  audio = np.stack([speech_like(rng, 0.5) for _ in range(2)])
  audio += 1e-3 * 0.3 * rng.standard_normal(audio.shape)
  audio = audio[:, :audio.shape[1] // frontend.block_size * frontend.block_size]
  report = check_streaming_contract(
      frontend, {}, jnp.asarray(audio, jnp.float32), atol=1e-4)
  assert report.stream_shape[1] == audio.shape[1] // frontend.block_size


def test_streaming_state_holds_window_minus_stride():
  frontend = MfccFrontend()
  state = frontend.init_state(4)
  assert state.shape == (4, 320) and state.dtype == jnp.float32
  # 25 ms windows every 10 ms: a step sees 3 strides and emits the frame
  # starting at the oldest sample, aligned with tf.signal.frame.
  frontend = MfccFrontend(window_size_ms=25.0, window_stride_ms=10.0)
  assert frontend.init_state(1).shape == (1, 320)
  assert frontend.lookback == 2


@pytest.mark.parametrize('dft, dft_macs', [
    ('fft', 4 * 512 * 10),       # N/2 log2 N butterflies of 4 real MACs
    ('matmul', 640 * 2 * 446),   # window x (real, imaginary) of bins 2..447
])
def test_step_macs_count_dft_mel_and_dct(dft, dft_macs):
  frontend = MfccFrontend(dft=dft)
  assert frontend.step_macs() == dft_macs + 446 * 40 + 40 * 20


def test_gradient_is_finite_on_silence_and_speech(rng):
  frontend = MfccFrontend()
  audio = jnp.asarray(np.stack([np.zeros(16000), speech_like(rng)]),
                      jnp.float32)
  grad = jax.grad(lambda a: jnp.sum(frontend.apply({}, a)))(audio)
  assert np.all(np.isfinite(np.asarray(grad)))
  assert np.abs(np.asarray(grad[1])).max() > 0


@pytest.mark.parametrize('audio, fragment', [
    (np.zeros((2, 16000), np.int16), 'dtype int16'),
    (np.zeros((2, 16000, 1), np.float32), 'expected [batch, samples]'),
    (np.zeros((2, 500), np.float32), 'at least one window of 640 samples'),
])
def test_bad_audio_is_named(audio, fragment):
  with pytest.raises(ValueError, match='frontend') as error:
    MfccFrontend().apply({}, jnp.asarray(audio))
  assert fragment in str(error.value)


def test_step_with_wrong_block_names_shapes():
  frontend = MfccFrontend()
  state = frontend.init_state(2)
  with pytest.raises(ValueError) as error:
    frontend.step({}, state, jnp.zeros((2, 160)))
  assert str(error.value) == (
      'frontend: audio block has shape (2, 160), expected [batch, n * 320, '
      '...]: a step takes whole blocks of 320 frames.')
  with pytest.raises(ValueError, match='dtype int32, expected float32'):
    frontend.step({}, state, jnp.zeros((2, 320), jnp.int32))


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(window_stride_ms=50.0), 'window_stride_ms is 50.0'),
    (dict(mel_upper_edge_hertz=9000.0), 'mel_upper_edge_hertz is 9000.0'),
    (dict(dct_num_features=41), 'dct_num_features is 41'),
    (dict(fft_length=256), 'fft_length is 256'),
    (dict(preemph=1.5), 'preemph is 1.5'),
    (dict(window_type='hamming'), "window_type is 'hamming'"),
    (dict(dft='dct'), "dft is 'dct'"),
    (dict(log_epsilon=0.0), 'log_epsilon is 0.0'),
    (dict(chunk_frames=-1), 'chunk_frames is -1'),
])
def test_bad_settings_fail_when_built(kwargs, fragment):
  with pytest.raises(ValueError, match='frontend') as error:
    MfccFrontend(**kwargs)
  assert fragment in str(error.value)


def test_semicausal_framing_streams_without_warm_up():
  from kws_jax.testing import check_streaming_contract  # pylint: disable=g-import-not-at-top
  frontend = MfccFrontend(padding='semicausal')
  assert frontend.lookback == 0 and frontend.output_length(16000) == 50
  audio = 0.1 * jax.random.normal(jax.random.key(0), (2, 3200))
  check_streaming_contract(frontend, {}, audio, atol=1e-4)
  # Frame i + 1 of the semicausal framing is frame i of the valid one.
  np.testing.assert_allclose(frontend.apply({}, audio)[:, 1:],
                             MfccFrontend().apply({}, audio), atol=1e-4)


def test_a_time_stride_after_the_frontend_needs_semicausal_framing():
  from experiments.configs import cnn as cnn_config  # pylint: disable=g-import-not-at-top
  from kws_jax.models import build_model  # pylint: disable=g-import-not-at-top
  config = cnn_config.get_config()
  config.model.update(cnn_filters='8,8', cnn_kernel_size='(2,3),(3,3)',
                      cnn_act="'relu','relu'", cnn_dilation_rate='(1,1),(1,1)',
                      cnn_strides='(2,1),(1,1)', units2='8', act2="'relu'")
  with pytest.raises(ValueError, match='the layers before conv2d_0 leave 1 '
                     'warm-up frames, not a multiple of its block of 2'):
    build_model(config)
  config.frontend.padding = 'semicausal'
  model = build_model(config)
  assert model.block_size == 640  # two 20 ms frames per step


@pytest.mark.parametrize('chunk_frames, batch', [(100, 5), (1, 3),
                                                  (10_000, 2)])
def test_features_in_chunks_equal_the_whole_batch(chunk_frames, batch, rng):
  # 1 s clips have 49 frames: chunks of 2 clips (the last one padded), a
  # chunk smaller than a clip (one clip at a time) and one larger than the
  # batch (no loop).
  audio = np.stack([speech_like(rng) for _ in range(batch)]).astype(np.float32)
  audio[1, 7000] = np.nan  # stays in its own clip's frames
  whole = MfccFrontend().apply({}, jnp.asarray(audio))
  chunked = jax.jit(lambda a: MfccFrontend(chunk_frames=chunk_frames).apply(
      {}, a))(jnp.asarray(audio))
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-4)
  assert np.isnan(np.asarray(chunked)[1]).any()
  assert np.isfinite(np.asarray(chunked)[np.arange(batch) != 1]).all()


def test_gradients_through_chunks_equal_the_whole_batch(rng):
  noise = jnp.asarray(0.1 * rng.standard_normal((3, 16000)), jnp.float32)
  grads = [jax.grad(lambda a, f=frontend: jnp.sum(f.apply({}, a)))(noise)
           for frontend in (MfccFrontend(), MfccFrontend(chunk_frames=100))]
  np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-4)
