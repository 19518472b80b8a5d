"""Wake-word models for ESPHome's micro_wake_word (export --esphome)."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip('tflite_micro')

from kws_jax.export import ExportError, esphome, export_run, forms, micro  # pylint: disable=g-import-not-at-top
from kws_jax.export import micro_runtime
from kws_jax.micro_frontend import micro_frontend_config
from kws_jax.models import build_model
from kws_jax.train import load_run, train_and_evaluate
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import


def esphome_config(data_dir: str):
  """A tiny one-keyword CNN on ESPHome's features, three frames a step."""
  config = tiny_config(data_dir)
  config.frontend = micro_frontend_config(window_stride_ms=10.0)
  config.model.update(preprocess='micro', cnn_strides='(3,1),(1,2)')
  config.data.wanted_words = 'yes'
  return config


@pytest.fixture(scope='module')
def esphome_run(tiny_data, tmp_path_factory):  # pylint: disable=redefined-outer-name
  workdir = str(tmp_path_factory.mktemp('esphome') / 'run')
  train_and_evaluate(esphome_config(tiny_data), workdir, progress=False)
  manifest = export_run(workdir, progress=False, workers=0, folders=(),
                        esphome=True, esphome_manifest={
                            'languages': ['en'], 'author': 'tests'})
  with open(os.path.join(workdir, manifest['esphome']['file']), 'rb') as file:
    flatbuffer = file.read()
  return workdir, manifest, flatbuffer


def test_the_manifest_is_what_esphome_reads(esphome_run):  # pylint: disable=redefined-outer-name
  workdir, manifest, flatbuffer = esphome_run
  entry = manifest['esphome']
  assert entry['file'] == 'esphome/yes.tflite'
  with open(os.path.join(workdir, entry['manifest']), encoding='utf-8') as f:
    written = json.load(f)
  assert written == {
      'type': 'micro', 'wake_word': 'yes', 'author': 'tests',
      'model': 'yes.tflite', 'trained_languages': ['en'], 'version': 2,
      'micro': {
          'probability_cutoff': written['micro']['probability_cutoff'],
          'feature_step_size': 10,
          'sliding_window_size': entry['sliding_window_size'],
          'tensor_arena_size': entry['arena_bytes'],
          'minimum_esphome_version': '2024.7.0'}}
  # ESPHome truncates the cutoff to uint8 and gets the chosen one back.
  assert int(written['micro']['probability_cutoff'] * 255) == (
      entry['probability_cutoff_uint8'])
  # No operating point in a plain run: the detector's defaults, said so.
  assert 'default' in entry['cutoff_source']
  # The default 300 ms of smoothing at 30 ms a step, threshold 0.8.
  assert entry['sliding_window_size'] == 10
  assert entry['probability_cutoff_uint8'] == 204
  assert entry['stride'] == 3
  assert len(flatbuffer) == entry['flash_bytes']
  assert 0 <= entry['test_split_tflm']['recall'] <= 1


def test_the_model_is_what_micro_wake_word_runs(esphome_run):  # pylint: disable=redefined-outer-name
  _, manifest, flatbuffer = esphome_run
  feature, probability = esphome.check_flatbuffer(flatbuffer)
  assert feature.shape == (1, 3, 40) and feature.dtype == np.int8
  assert (feature.scale, feature.zero_point) == (0.1015625, -128)
  assert probability.shape == (1, 1) and probability.dtype == np.uint8
  assert set(manifest['esphome']['ops']) <= esphome.ESPHOME_OPS
  assert {'VAR_HANDLE', 'READ_VARIABLE', 'ASSIGN_VARIABLE', 'CALL_ONCE',
          'LOGISTIC'} <= set(manifest['esphome']['ops'])
  assert 'SLICE' not in manifest['esphome']['ops']
  # One variable per streaming state of the features model.
  _, model, _ = load_run(esphome_run[0])
  states = forms.state_specs(micro.features_model(model))
  assert manifest['esphome']['resource_variables'] == sorted(
      'state_' + s.name for s in states)


def test_the_arena_is_the_smallest_that_works(esphome_run):  # pylint: disable=redefined-outer-name
  _, manifest, flatbuffer = esphome_run
  arena = manifest['esphome']['arena_bytes']
  assert micro_runtime._runs_here(flatbuffer, arena)  # pylint: disable=protected-access
  assert not micro_runtime._runs_here(flatbuffer, arena - 1)  # pylint: disable=protected-access


def _features(seed: int, frames: int = 99) -> np.ndarray:
  return np.random.default_rng(seed).uniform(
      0.0, 20.0, (frames, 40)).astype(np.float32)


def test_tflm_equals_litert_and_follows_the_float_probability(esphome_run):  # pylint: disable=redefined-outer-name
  workdir, _, flatbuffer = esphome_run
  _, model, params = load_run(workdir)
  model = micro.features_model(model)
  features = esphome.esphome_features(_features(0), model.frontend.out_scale)
  tflm = esphome.ProbabilityStream(flatbuffer, 'tflm')
  got = tflm.probabilities(features)
  litert = esphome.ProbabilityStream(flatbuffer, 'litert').probabilities(
      features)
  np.testing.assert_array_equal(got, litert)
  tflm.reset()  # the states back at their start
  np.testing.assert_array_equal(tflm.probabilities(features), got)

  step = jax.jit(esphome.probability_fn(model, params, 2))
  states = [jnp.asarray(s) for s in forms.zero_states(model)]
  dequantized = (features.astype(np.float32) + 128) * esphome.FEATURE_SCALE
  expected = []
  for i in range(len(got)):
    probability, *states = step(jnp.asarray(dequantized[None, 3 * i:3 * i + 3]),
                                *states)
    expected.append(float(probability[0, 0]))
  error = np.abs(got / 256 - np.asarray(expected))
  assert error.max() < 0.05 and error.mean() < 0.02, error


def test_slices_become_strided_slices_that_copy_the_same_values(esphome_run):  # pylint: disable=redefined-outer-name
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  from kws_jax.export import tflite  # pylint: disable=g-import-not-at-top
  workdir, _, _ = esphome_run
  config, _, params = load_run(workdir)
  config.model.conv_implementation = 'xla'
  model = micro.features_model(build_model(config))
  clips = _features(1, 60)[None]
  raw = esphome.converter_output(model, params, 2, clips)
  assert 'SLICE' in tflite.op_names(raw)
  with pytest.raises(ExportError, match=r'it uses SLICE, which ESPHome does '
                     'not register'):
    esphome.check_flatbuffer(raw)
  rewritten = esphome.slices_as_strided_slices(raw)
  assert 'SLICE' not in tflite.op_names(rewritten)
  outputs = []
  for flatbuffer in (raw, rewritten):
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    blocks = esphome.esphome_features(clips[0], 10 / 256)
    outputs.append([runner(features=blocks[None, i:i + 3])['probability'].item()
                    for i in range(0, 60, 3)])
  assert outputs[0] == outputs[1]


def test_esphome_features_are_the_devices_integer_formula():
  raw = np.array([0, 1, 2, 332, 333, 334, 663, 664, 65535])
  got = esphome.esphome_features(raw * (10 / 256), 10 / 256)
  # (256 v + 333) // 666 - 128, clamped.
  np.testing.assert_array_equal(got, [-128, -128, -127, -0, 0, 0, 127, 127,
                                      127])
  values = np.arange(0, 700)
  close = np.clip(np.round(values * (10 / 256) / esphome.FEATURE_SCALE) - 128,
                  -128, 127)
  assert np.abs(esphome.esphome_features(values * (10 / 256), 10 / 256)
                - close).max() <= 1


@pytest.mark.parametrize('keyword', [0, 1, 2])
def test_keyword_probability_is_the_margin_over_the_best_other_label(keyword):
  logits = jnp.asarray(np.random.default_rng(keyword).normal(0, 3, (1, 3)),
                       jnp.float32)
  got = float(esphome.keyword_probability(logits, keyword)[0, 0])
  others = np.delete(np.asarray(logits[0]), keyword)
  margin = float(logits[0, keyword]) - others.max()
  assert got == pytest.approx(1 / (1 + np.exp(-margin)), rel=1e-6)
  softmax = float(jax.nn.softmax(logits)[0, keyword])
  assert softmax <= got + 1e-7


def test_keyword_probability_of_two_labels_is_the_softmax():
  logits = jnp.asarray([[0.3, 2.1]])
  assert float(esphome.keyword_probability(logits, 1)[0, 0]) == pytest.approx(
      float(jax.nn.softmax(logits)[0, 1]), rel=1e-6)


def test_the_rule_is_esphomes_mean_over_a_zero_filled_window():
  probabilities = np.array([255, 255, 0, 200, 210, 220], np.uint8)
  sums = esphome.window_sums(probabilities, 3)
  np.testing.assert_array_equal(sums, [255, 510, 510, 455, 410, 630])
  # mean > cutoff: 630 / 3 = 210 > 209, not > 210.
  np.testing.assert_array_equal(esphome.fires(sums, 209, 3),
                                [False, False, False, False, False, True])
  assert not esphome.fires(sums, 210, 3).any()


def test_every_cutoff_survives_esphomes_truncation():
  for cutoff in range(255):
    assert int(esphome.cutoff_value(cutoff) * 255) == cutoff


def test_the_float_operating_point_maps_to_esphome_settings():
  detection = esphome.detection_from_operating_point(
      {'threshold': 0.9, 'smoothing_ms': 300.0}, 30.0)
  assert (detection.cutoff, detection.sliding_window_size) == (229, 10)
  assert 'operating point' in detection.source


@pytest.mark.parametrize('overrides, message', [
    ({'preprocess': 'raw'}, r"model.preprocess is 'raw', expected 'micro'"),
    ({'window_stride_ms': 20.0},
     r'frontend.window_stride_ms is 20.0, ESPHome uses 10.0'),
    ({'num_channels': 32}, r'frontend.num_channels is 32, ESPHome uses 40'),
])
def test_a_model_esphome_cannot_run_is_refused_by_name(tiny_data, overrides,  # pylint: disable=redefined-outer-name
                                                      message):
  config = esphome_config(tiny_data)
  if 'preprocess' in overrides:  # raw audio in, the frontend inside
    config.model.preprocess = overrides['preprocess']
    config.frontend.padding = 'semicausal'
  else:
    config.frontend.update(overrides)
  with pytest.raises(ExportError, match=message):
    esphome.check_model(build_model(config))


@pytest.mark.parametrize('labels, count', [
    (['_silence_', '_unknown_', 'yes', 'no'], 2), (['_silence_', '_unknown_'], 0)])
def test_one_wake_word_only(labels, count):
  with pytest.raises(ExportError, match=f'have {count} keywords'):
    esphome.keyword_index(labels)
  assert esphome.keyword_index(['_silence_', '_unknown_', 'hey jax']) == 2


# -- The wake-word recipe's sweep (kws_jax.wakeword.esphome) -------------------


def test_stream_features_carry_the_frontend_state_across_segments(monkeypatch):
  from kws_jax.wakeword import esphome as wakeword_esphome  # pylint: disable=g-import-not-at-top
  frontend = esphome.esphome_frontend()
  audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
  whole = esphome.esphome_features(
      np.asarray(frontend.apply({}, jnp.asarray(audio[None])))[0],
      frontend.out_scale)
  monkeypatch.setattr(wakeword_esphome, 'SEGMENT_FRAMES', 7)
  segmented = wakeword_esphome.stream_features(frontend, audio)
  # The step form emits a frame per stride from the first; the full-window
  # form only once its first window is whole.
  warmup = segmented.shape[0] - whole.shape[0]
  assert warmup == 2
  np.testing.assert_array_equal(segmented[warmup:], whole)


def _stream(name, seconds, events=()):
  from kws_jax.data.synth_stream import KeywordEvent  # pylint: disable=g-import-not-at-top
  from kws_jax.wakeword import streams as streams_lib  # pylint: disable=g-import-not-at-top
  return streams_lib.Stream(name, np.zeros(int(seconds * 16000), np.float32),
                            tuple(KeywordEvent('yes', *e) for e in events))


def test_the_sweep_applies_esphomes_rule_at_every_cutoff():
  from kws_jax.wakeword import esphome as wakeword_esphome  # pylint: disable=g-import-not-at-top
  step_s = 0.03
  # 60 s with a keyword at 10-11 s; the model gives 200 during it, and 150
  # for 0.3 s at 40 s (a false accept at cutoffs below 150).
  steps = np.zeros(2000, np.uint8)
  steps[int(10.2 / step_s):int(10.8 / step_s)] = 200
  steps[int(40 / step_s):int(40.3 / step_s)] = 150
  points = wakeword_esphome.sweep(
      [steps], [_stream('keywords.wav', 60, [(10.0, 11.0)])], 'yes', step_s,
      window=5)
  assert [p.threshold for p in points[:3]] == [0.0, 1.0, 2.0]
  assert len(points) == 255
  by_cutoff = {int(p.threshold): p for p in points}
  assert by_cutoff[100].misses == 0 and by_cutoff[100].false_accepts == 1
  # A mean of 150 over 5 steps fires above 149, not at 150.
  assert by_cutoff[149].false_accepts == 1
  assert by_cutoff[150].false_accepts == 0 and by_cutoff[150].misses == 0
  assert by_cutoff[199].misses == 0 and by_cutoff[200].misses == 1


def test_the_cutoff_is_swept_on_the_shipped_model(esphome_run):  # pylint: disable=redefined-outer-name
  from kws_jax.wakeword import esphome as wakeword_esphome  # pylint: disable=g-import-not-at-top
  _, _, flatbuffer = esphome_run
  rng = np.random.default_rng(0)
  streams = [_stream('keywords.wav', 6, [(2.0, 3.0)]),
             _stream('negative.wav', 6)]
  streams = [dataclasses.replace(s, audio=rng.normal(0, 0.05, len(s.audio))
                                 .astype(np.float32)) for s in streams]
  detection, sweep = wakeword_esphome.choose_detection(
      flatbuffer, esphome.esphome_frontend(), streams, 'yes', 0.03, 4,
      target_fa_per_hour=1000.0, progress=False)
  assert sweep['hours'] == pytest.approx(12 / 3600)
  assert len(sweep['points']) == 255
  assert detection.sliding_window_size == 4
  assert 'swept on 0.00 h of validation streams' in detection.source or (
      'none reaches' in detection.source)
  best = sweep['points'][detection.cutoff]
  if 'swept' in detection.source:
    assert best['fa_per_hour'] <= 1000.0
    assert all(p['frr'] >= best['frr'] for p in sweep['points']
               if p['fa_per_hour'] <= 1000.0)


def test_the_esphome_config_converts_to_an_esphome_model():
  """experiments/configs/esphome_cnn.py, untrained: every check passes."""
  from experiments.configs import esphome_cnn  # pylint: disable=g-import-not-at-top
  config = esphome_cnn.get_config()
  config.data.wanted_words = 'hey jax'
  config.model.conv_implementation = 'xla'
  model = build_model(config)
  esphome.check_model(model)
  params = model.init(jax.random.PRNGKey(0))
  flatbuffer = esphome.convert(micro.features_model(model), params, 2,
                               _features(2, 100)[None])
  feature, _ = esphome.check_flatbuffer(flatbuffer)
  assert feature.shape == (1, 3, 40)
  assert len(esphome.resource_variables(flatbuffer)) == 3
