"""Many recordings streamed at once equal each stepped block by block."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from experiments.configs import gru as gru_config
from kws_jax.detect import detector as detector_lib
from kws_jax.micro_frontend import micro_frontend_config
from kws_jax.models import build_model, streaming
from kws_jax.wakeword import streams as streams_lib
from tests.test_streaming import tiny_model
from tests.test_train import tiny_config

BLOCK = 320


def tiny_gru():
  config = tiny_config('unused')
  config.model = gru_config.get_config().model
  config.model.update(preprocess='raw', gru_units='6', units1='8',
                      act1="'relu'")
  model = build_model(config)
  return model, model.init(jax.random.key(4))


def tiny_micro_cnn():
  config = tiny_config('unused')
  config.frontend = micro_frontend_config(window_stride_ms=20.0)
  config.model.preprocess = 'micro'
  model = build_model(config)
  return model, model.init(jax.random.key(5))


def small_model(kind: str):
  """A CNN on raw audio (warm-up 51 steps), a GRU on raw audio or a CNN on
  TFLM's micro frontend (both: state never forgets)."""
  if kind == 'gru':
    return tiny_gru()
  if kind == 'micro cnn':
    return tiny_micro_cnn()
  return tiny_model('raw')


def recordings(rng, blocks_and_extra):
  """Random audio of ``blocks * BLOCK + extra`` samples each."""
  return [rng.uniform(-0.5, 0.5, blocks * BLOCK + extra).astype(np.float32)
          for blocks, extra in blocks_and_extra]


def reference(model, params, audio_list):
  """Each recording stepped block by block from the zero state at batch 1,
  a last partial block padded with zeros (one compiled step for all)."""
  step = jax.jit(lambda s, b: streaming.audio_step(model, params, s, b))
  expected = []
  for audio in audio_list:
    steps = -(-len(audio) // BLOCK)
    blocks = np.pad(audio, (0, steps * BLOCK - len(audio))).reshape(-1, BLOCK)
    state = streaming.init_audio_state(model, 1)
    rows = []
    for block in blocks:
      state, logits = step(state, block[None])
      rows.append(np.asarray(logits[0]))
    expected.append(np.stack(rows))
  return expected


# Blocks and extra samples: shorter than one segment (16 steps), not a
# multiple of the block, one sample, over the CNN's warm-up (51 steps) plus
# several segments.
LENGTHS = [(130, 0), (5, 0), (37, 211), (0, 1), (64, 0), (90, 17)]


@pytest.mark.parametrize('kind, batch_size', [('cnn', 4), ('cnn', 1),
                                              ('gru', 2), ('gru', 16),
                                              ('micro cnn', 3)])
def test_many_recordings_equal_each_stepped_block_by_block(rng, kind,
                                                           batch_size):
  model, params = small_model(kind)
  assert streaming.block_samples(model) == BLOCK
  assert (streaming.warmup_steps(model) is None) == (kind != 'cnn')
  # The micro frontend compiles and steps slowly: fewer recordings, still
  # more than its rows.
  audio = recordings(rng, LENGTHS[1:5] if kind == 'micro cnn' else LENGTHS)
  logits = streaming.stream_logits_many(model, params, audio,
                                        segment_steps=16,
                                        batch_size=batch_size)
  assert len(logits) == len(audio)
  for one, out, expected in zip(audio, logits,
                                reference(model, params, audio)):
    assert out.dtype == np.float32
    assert out.shape == (-(-len(one) // BLOCK), model.label_count)
    np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize('kind', ['cnn', 'gru'])
def test_one_compiled_shape_for_recordings_of_any_length(rng, kind):
  model, params = small_model(kind)
  scan = streaming.scan_logits if kind == 'cnn' else streaming._scan_rows  # pylint: disable=protected-access
  scan.clear_cache()
  for lengths in (LENGTHS, [(300, 3), (2, 0), (9, 1)], LENGTHS[::-1]):
    streaming.stream_logits_many(model, params, recordings(rng, lengths),
                                 segment_steps=16, batch_size=3)
  assert scan._cache_size() == 1  # pylint: disable=protected-access


def test_the_order_of_the_recordings_is_kept(rng):
  model, params = tiny_gru()
  audio = recordings(rng, [(40, 0), (3, 0), (40, 0), (21, 5)])
  logits = streaming.stream_logits_many(model, params, audio,
                                        segment_steps=16, batch_size=2)
  order = [2, 0, 3, 1]
  shuffled = streaming.stream_logits_many(model, params,
                                          [audio[i] for i in order],
                                          segment_steps=16, batch_size=2)
  for position, i in enumerate(order):
    np.testing.assert_allclose(shuffled[position], logits[i], atol=1e-6)
  # Equal-length recordings of different audio differ.
  assert np.abs(logits[0] - logits[2]).max() > 1e-3


def test_one_recording_is_stream_logits(rng):
  model, params = small_model('cnn')
  [audio] = recordings(rng, [(100, 9)])
  [many] = streaming.stream_logits_many(model, params, [audio],
                                        segment_steps=16, batch_size=2)
  np.testing.assert_array_equal(
      many, streaming.stream_logits(model, params, audio, segment_steps=16,
                                    batch_size=2))


def test_no_recordings_give_no_logits():
  model, params = small_model('cnn')
  assert streaming.stream_logits_many(model, params, []) == []


@pytest.mark.parametrize('bad, fragment', [
    (np.zeros((2, 320), np.float32),
     r'recording 2 has shape \(2, 320\), expected \[samples\]'),
    (np.zeros(0, np.float32), r'recording 2 has shape \(0,\)'),
    (np.array([0.1] * 7 + [np.nan], np.float32),
     'recording 2 holds NaN or infinity \\(first at sample 7: nan\\)'),
    (np.array([0.0, -np.inf], np.float32),
     'recording 2 holds NaN or infinity \\(first at sample 1: -inf\\)'),
])
def test_a_bad_recording_is_named_by_its_index(rng, bad, fragment):
  model, params = small_model('cnn')
  audio = recordings(rng, [(3, 0), (4, 0)]) + [bad]
  with pytest.raises(ValueError, match=fragment):
    streaming.stream_logits_many(model, params, audio)


@pytest.mark.parametrize('option', [{'segment_steps': 0}, {'batch_size': 0}])
def test_segment_and_batch_sizes_must_be_positive(rng, option):
  model, params = small_model('cnn')
  with pytest.raises(ValueError, match='expected >= 1'):
    streaming.stream_logits_many(model, params, recordings(rng, [(3, 0)]),
                                 **option)


def test_stream_posteriors_streams_all_streams_in_one_call(rng, monkeypatch):
  model, params = small_model('cnn')
  audio = recordings(rng, [(200, 0), (20, 3), (75, 0)])
  streams = [streams_lib.Stream(f's{i}', one, ()) for i, one in
             enumerate(audio)]
  calls = []
  original = streaming.stream_logits_many

  def counted(*args, **kwargs):
    calls.append(len(args[2]))
    return original(*args, **kwargs)

  monkeypatch.setattr(streaming, 'stream_logits_many', counted)
  items = streams_lib.stream_posteriors(model, params, streams,
                                        smoothing_ms=60)
  assert calls == [3]
  for stream, item, logits in zip(streams, items,
                                  reference(model, params, audio)):
    assert item.stream is stream
    expected = detector_lib.smooth_posteriors(detector_lib.softmax(logits), 3)
    np.testing.assert_allclose(item.smoothed, expected, atol=1e-5)
