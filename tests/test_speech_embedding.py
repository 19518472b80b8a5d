"""The speech embedding: equal to openWakeWord's ONNX models, streaming, geometry."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import speech_like
from kws_jax.layers import scan_steps
from kws_jax.speech_embedding import (BLOCK, LogMelSpectrogram, SpeechEmbedding,
                                      embeddings, load_weights, window_macs)
from kws_jax.testing import check_streaming_contract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'third_party', 'speech_embedding'))
import convert  # pylint: disable=g-import-not-at-top,wrong-import-position

WHEEL_CACHE = os.path.join(os.path.expanduser('~'), '.cache', 'kws_jax',
                           'wheels')


@pytest.fixture(scope='module')
def wheel() -> str:
  """openWakeWord 0.4.0, fetched once through pip (the only network use)."""
  os.makedirs(WHEEL_CACHE, exist_ok=True)
  return convert.fetch_wheel(WHEEL_CACHE)


@pytest.fixture(scope='module')
def onnx_models(wheel):
  ort = pytest.importorskip('onnxruntime')
  return tuple(ort.InferenceSession(convert.onnx_bytes(wheel, name))
               for name in ('melspectrogram.onnx', 'embedding_model.onnx'))


def noisy_speech(seed: int, seconds: float) -> np.ndarray:
  rng = np.random.default_rng(seed)
  samples = int(seconds * 16000)
  return (speech_like(rng, seconds) +
          0.01 * rng.standard_normal(samples)).astype(np.float32)


def onnx_mel(session, audio: np.ndarray) -> np.ndarray:
  """openWakeWord's features: ONNX melspectrogram / 10 + 2, ``[frames, 32]``."""
  out = session.run(None, {'input': (audio * 32768.0)[None]})[0]
  return out.reshape(-1, 32) / 10.0 + 2.0


def onnx_embeddings(session, mel: np.ndarray) -> np.ndarray:
  windows = np.stack([mel[8 * k:8 * k + 76]
                      for k in range((len(mel) - 76) // 8 + 1)])
  return session.run(None, {'input_1': windows[..., None]})[0][:, 0, 0]


def test_committed_weights_are_the_conversion_of_the_wheel(wheel):
  convert.check(convert.convert(wheel), convert.WEIGHTS)
  weights = load_weights()
  total = sum(v.size for k, v in weights.items() if k != 'mel_weights')
  # The ONNX initializers hold 328,217 values: these, plus 8 pad widths, two
  # 4-entry shapes and the -0.4 constant.
  assert total == 328_200


@pytest.mark.parametrize('seed', [0, 1])
def test_mel_equals_onnx_on_speech(onnx_models, seed):
  audio = noisy_speech(seed, 2.0)
  expected = onnx_mel(onnx_models[0], audio)
  ours = np.asarray(LogMelSpectrogram().apply({}, jnp.asarray(audio[None])))[0]
  # The ONNX frame is 512 samples, ours ends with the window at 456.
  assert ours.shape == (198, 32) and expected.shape == (197, 32)
  np.testing.assert_allclose(ours[:197], expected, atol=1e-4)


@pytest.mark.parametrize('dft', ['fft', 'matmul'])
def test_embeddings_equal_onnx_on_the_same_audio(onnx_models, dft):
  mel_session, embedding_session = onnx_models
  audio = noisy_speech(2, 2.0)
  expected = onnx_embeddings(embedding_session, onnx_mel(mel_session, audio))
  ours = np.asarray(SpeechEmbedding(dft=dft).apply({}, jnp.asarray(
      audio[None])))[0]
  assert ours.shape == expected.shape == (16, 96)
  assert np.abs(expected).max() > 10  # not a trivially small output
  np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_network_on_a_sequence_equals_each_window(onnx_models):
  mel = onnx_mel(onnx_models[0], noisy_speech(3, 1.5))
  ours = np.asarray(embeddings(load_weights(), jnp.asarray(mel[None])))[0]
  np.testing.assert_allclose(ours, onnx_embeddings(onnx_models[1], mel),
                             atol=1e-4)


def test_clip_is_per_frame_equal_to_onnx_run_one_frame_at_a_time(onnx_models):
  """Our causal clip equals ONNX on single frames, not ONNX on a whole clip."""
  rng = np.random.default_rng(4)
  audio = np.concatenate([np.zeros(4000), 0.5 * speech_like(rng, 0.5)]
                         ).astype(np.float32)  # digital silence, then speech
  ours = np.asarray(LogMelSpectrogram().apply({}, jnp.asarray(audio[None])))[0]
  frames = (len(audio) - 512) // 160 + 1
  one_at_a_time = np.stack([
      onnx_mel(onnx_models[0], audio[160 * j:160 * j + 512])[0]
      for j in range(frames)])
  np.testing.assert_allclose(ours[:frames], one_at_a_time, atol=1e-4)
  whole = onnx_mel(onnx_models[0], audio)
  # Silence: -100 dB here; the whole-clip ONNX floors it 80 dB below speech.
  assert np.allclose(ours[0], -8.0)
  assert whole[0].min() > ours[0].max() + 10


def test_geometry():
  layer = SpeechEmbedding()
  assert (layer.block_size, layer.lookback, layer.state_samples) == (1280, 9,
                                                                     584)
  assert layer.output_length(32000) == 16  # 2 s: the 16 embeddings of a head
  assert layer.output_length(12800) == 1
  state = layer.init_state(3)
  assert {k: v.shape for k, v in state.items()} == {'audio': (3, 584),
                                                    'mel': (3, 68, 32)}
  assert LogMelSpectrogram().lookback == 2
  assert LogMelSpectrogram().output_length(16000) == 98


@pytest.mark.parametrize('layer, blocks', [
    (LogMelSpectrogram(), 12), (LogMelSpectrogram(dft='matmul'), 9),
    (SpeechEmbedding(), 11), (SpeechEmbedding(dft='matmul'), 12)])
def test_streaming_contract(layer, blocks):
  x = jnp.asarray(np.stack([noisy_speech(5, 1.0), noisy_speech(6, 1.0)])
                  [:, :blocks * layer.block_size])
  report = check_streaming_contract(layer, {}, x, atol=2e-4)
  assert report.output_diff < 2e-4


def test_stream_started_mid_audio_catches_up_after_lookback():
  layer = SpeechEmbedding()
  audio = jnp.asarray(noisy_speech(7, 2.4)[None, :15 * BLOCK])
  full = layer.apply({}, audio)
  _, late = scan_steps(layer, {}, audio[:, 5 * BLOCK:])
  np.testing.assert_allclose(late[:, 9:], full[:, 5:], atol=2e-4)


def test_trailing_samples_after_the_last_block_are_ignored():
  layer = SpeechEmbedding()
  audio = jnp.asarray(noisy_speech(8, 1.2)[None, :12 * BLOCK + 1000])
  np.testing.assert_array_equal(layer.apply({}, audio),
                                layer.apply({}, audio[:, :12 * BLOCK]))


def test_macs_match_xla_cost_analysis():
  weights = load_weights()
  mel = jnp.zeros((1, 76, 32))
  compiled = jax.jit(lambda m: embeddings(weights, m)).lower(mel).compile()
  flops = compiled.cost_analysis()['flops']
  assert window_macs(weights) == 41_955_840
  # XLA skips the taps on the mel padding (1.6 M) but counts bias adds and
  # activations: within 2%.
  assert abs(flops / 2 - window_macs(weights)) / window_macs(weights) < 0.02


@pytest.mark.parametrize('kwargs, fragment', [
    ({'sample_rate': 8000}, 'sample_rate is 8000, expected 16000'),
    ({'clip_db': 0.0}, 'clip_db is 0.0'),
    ({'dft': 'dct'}, "dft is 'dct'"),
    ({'max_weight_block': -1}, 'max_weight_block is -1'),
])
def test_bad_settings_name_the_field(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    SpeechEmbedding(**kwargs)


def test_bad_inputs_name_the_layer_and_shapes():
  layer = SpeechEmbedding()
  with pytest.raises(ValueError, match='at least 12800'):
    layer.apply({}, jnp.zeros((1, 12000)))
  with pytest.raises(ValueError, match=r'audio block has shape \(1, 320\), '
                     r'expected \[batch, n \* 1280'):
    layer.step({}, layer.init_state(1), jnp.zeros((1, 320)))
  with pytest.raises(ValueError, match='expected rank 2'):
    layer.apply({}, jnp.zeros((1, 32000, 1)))


def test_missing_weights_say_how_to_make_them(tmp_path):
  missing = str(tmp_path / 'nope.npz')
  with pytest.raises(FileNotFoundError, match='convert.py'):
    SpeechEmbedding(weights_path=missing).apply({}, jnp.zeros((1, 12800)))
