"""Wake-word training: streaming evaluation over many streams, selection, mining."""

import json
import os

import jax
import numpy as np
import pytest

from kws_jax.data.synth_stream import KeywordEvent
from kws_jax.detect import detector as detector_lib
from kws_jax.detect import metrics
from kws_jax.models import build_model, streaming
from kws_jax.train import Selection, train_and_evaluate
from kws_jax.wakeword import mining, selection
from kws_jax.wakeword import streams as streams_lib
from tests.test_train import tiny_config, tiny_data  # pylint: disable=unused-import

LABELS = ('_silence_', '_unknown_', 'yes', 'no')
BLOCK_S = 0.02


@pytest.mark.parametrize('window', [1, 3, 15])
def test_smoothing_all_rows_at_once_equals_the_smoother(rng, window):
  posteriors = rng.dirichlet(np.ones(4), 60).astype(np.float32)
  smoother = detector_lib.Smoother(window, 4)
  expected = np.stack([smoother(row) for row in posteriors])
  np.testing.assert_allclose(
      detector_lib.smooth_posteriors(posteriors, window), expected, atol=1e-6)


def peaks_posteriors(spec, seconds: float) -> np.ndarray:
  """Smoothed posteriors: 'yes'/'no' at `height` over [start, end) seconds."""
  rows = int(seconds / BLOCK_S)
  smoothed = np.zeros((rows, 4), np.float32)
  smoothed[:, 1] = 1.0
  for word, start, end, height in spec:
    span = slice(int(start / BLOCK_S), int(end / BLOCK_S))
    smoothed[span, LABELS.index(word)] = height
    smoothed[span, 1] = 1.0 - height
  return smoothed


def posteriors(name, spec, seconds, events=()):
  stream = streams_lib.Stream(name, np.zeros(int(seconds * 16000), np.float32),
                              tuple(events))
  return streams_lib.Posteriors(stream, peaks_posteriors(spec, seconds),
                                BLOCK_S)


def test_sweep_sums_misses_and_false_accepts_over_streams():
  keyword_stream = posteriors(
      'kw', [('yes', 1.0, 1.4, 0.9), ('no', 5.0, 5.2, 0.6),
             ('yes', 8.0, 8.3, 0.95)], 10.0,
      [KeywordEvent('yes', 0.7, 1.1), KeywordEvent('no', 4.7, 5.0)])
  negative_stream = posteriors(
      'neg', [('no', 2.0, 2.5, 0.7), ('yes', 20.0, 20.3, 0.97)], 30.0)
  points = streams_lib.sweep([keyword_stream, negative_stream], LABELS,
                             thresholds=[0.5, 0.8, 0.96])
  by_threshold = {p.threshold: p for p in points}
  # 0.5: both keywords hit; false accepts: yes@8 (kw stream), no@2, yes@20.
  assert (by_threshold[0.5].misses, by_threshold[0.5].false_accepts) == (0, 3)
  # 0.8: 'no' (0.6) is missed; false accepts yes@8 and yes@20.
  assert (by_threshold[0.8].misses, by_threshold[0.8].false_accepts) == (1, 2)
  # 0.96: only yes@20 fires, a false accept; both keywords missed.
  assert (by_threshold[0.96].misses, by_threshold[0.96].false_accepts) == (2, 1)
  for point in points:
    assert point.occurrences == 2
    assert point.hours == pytest.approx(40.0 / 3600)
  # Each stream alone gives the parts of the sum.
  alone = [metrics.sweep(p.smoothed, LABELS, BLOCK_S, p.stream.events,
                         thresholds=[0.8])[0]
           for p in (keyword_stream, negative_stream)]
  assert sum(p.false_accepts for p in alone) == 2


def test_budgets_report_the_best_point_or_none():
  points = [metrics.OperatingPoint(t, 0, fa, misses, 10, 2.0)
            for t, fa, misses in ((0.5, 8, 1), (0.9, 2, 3), (0.99, 0, 6))]
  result = streams_lib.frr_at_budgets(points, (0.5, 1.0, 5.0))
  assert result['0.5']['threshold'] == 0.99 and result['1']['threshold'] == 0.9
  assert result['5']['frr'] == pytest.approx(0.1)
  assert streams_lib.frr_at_budgets(points[:1], (0.5,)) == {'0.5': None}


def test_streams_read_their_ground_truth(tmp_path):
  from kws_jax.data import audio  # pylint: disable=g-import-not-at-top
  audio.write_wav(tmp_path / 'a.wav', np.zeros(16000, np.float32))
  audio.write_wav(tmp_path / 'b.wav', np.zeros(8000, np.float32))
  (tmp_path / 'a.csv').write_text('word,start_s,end_s\nyes,0.10000,0.40000\n')
  a, b = streams_lib.load_streams([tmp_path / 'a.wav', tmp_path / 'b.wav'])
  assert a.events == (KeywordEvent('yes', 0.1, 0.4),) and b.events == ()
  assert (a.seconds, b.seconds) == (1.0, 0.5)
  with pytest.raises(ValueError, match='no streams'):
    streams_lib.load_streams([])


# -- Selection -------------------------------------------------------------


def _sweep(*points):
  """Operating points over 1 hour and 10 keywords: (threshold, FAs, misses)."""
  return [metrics.OperatingPoint(threshold, 10 - misses + false_accepts,
                                 false_accepts, misses, 10, 1.0)
          for threshold, false_accepts, misses in points]


@pytest.mark.parametrize('better, worse', [
    # Lower FRR at the target and at every looser budget wins.
    ((_sweep((0.9, 1, 1)), 0.9), (_sweep((0.9, 1, 2)), 0.99)),
    # Equal sweeps: higher accuracy wins.
    ((_sweep((0.9, 1, 1)), 0.9), (_sweep((0.9, 1, 1)), 0.8)),
    # Both miss everything at the target (1 FA/h); the looser budgets decide.
    ((_sweep((0.99, 0, 10), (0.9, 3, 2)), 0.5),
     (_sweep((0.99, 0, 10), (0.9, 3, 8)), 0.99)),
    # Neither reaches the target; the one that reaches 4 FA/h wins.
    ((_sweep((0.9, 4, 5)), 0.1), (_sweep((0.9, 40, 0)), 0.99)),
])
def test_selection_score_orders_checkpoints(better, worse):
  assert selection.score(*better[:1], 1.0, better[1]) > selection.score(
      *worse[:1], 1.0, worse[1])


def test_selection_score_is_the_mean_recall_over_the_ladder():
  assert selection.budgets(0.5) == (0.5, 1.0, 2.0, 4.0, 8.0)
  # Recall 0.9 from 2 FA/h up, nothing kept within 0.5 or 1 FA/h.
  points = _sweep((0.9, 2, 1))
  assert selection.score(points, 0.5, 0.7) == pytest.approx(
      3 * 0.9 / 5 + 0.7e-3)
  assert selection.score([], 0.5, 0.0) == 0.0


def test_operating_point_file_round_trip(tmp_path):
  assert selection.read_operating_point(str(tmp_path)) is None
  point = {'threshold': 0.93, 'smoothing_ms': 300.0}
  path = selection.write_operating_point(str(tmp_path), point)
  assert os.path.basename(path) == 'operating_point.json'
  assert selection.read_operating_point(str(tmp_path)) == point


@pytest.fixture(scope='module')
def tiny_model():
  config = tiny_config('unused')
  config.model.preprocess = 'raw'
  model = build_model(config)
  return model, model.init(jax.random.key(0))


def test_stream_selector_reports_frr_at_the_target(tiny_model, monkeypatch):
  model, params = tiny_model
  stream = streams_lib.Stream('s', np.zeros(16000, np.float32), ())
  points = [metrics.OperatingPoint(0.5, 9, 6, 0, 10, 2.0),
            metrics.OperatingPoint(0.9, 5, 1, 4, 10, 2.0)]
  monkeypatch.setattr(streams_lib, 'evaluate', lambda *a, **k: points)
  selector = selection.StreamSelector(model, LABELS, [stream],
                                      target_fa_per_hour=1.0)
  chosen = selector({}, 0.8)
  assert isinstance(chosen, Selection)
  # Budgets 1, 2, 4, 8, 16 FA/h: recall 0.6 at the first two, then 1.0.
  assert chosen.scalars == {'frr': 0.4, 'fa_per_hour': 0.5, 'threshold': 0.9,
                            'frr_at_1': 0.4, 'frr_at_2': 0.4, 'frr_at_4': 0.0,
                            'frr_at_8': 0.0, 'frr_at_16': 0.0}
  assert chosen.score == pytest.approx((2 * 0.6 + 3 * 1.0) / 5 + 0.8e-3)
  assert 'FRR 40.0% at 0.50 FA/h' in chosen.text
  assert 'FRR at FA/h 1: 40.0%, 2: 40.0%, 4: 0.0%' in chosen.text
  point = selector.operating_point({})
  assert (point['threshold'], point['frr'], point['validation_hours']) == (
      0.9, 0.4, 2.0)
  strict = selection.StreamSelector(model, LABELS, [stream],
                                    target_fa_per_hour=0.1)
  # Budgets 0.1-1.6 FA/h: only 0.8 and 1.6 are kept (recall 0.6).
  assert strict({}, 0.8).score == pytest.approx(2 * 0.6 / 5 + 0.8e-3)
  assert '0.1 FA/h not reached' in strict({}, 0.8).text
  assert strict.operating_point({})['threshold'] is None
  with pytest.raises(ValueError, match='target_fa_per_hour=0'):
    selection.StreamSelector(model, LABELS, [stream], target_fa_per_hour=0)


def test_stream_evaluation_runs_the_model_batched(tiny_model, rng):
  model, params = tiny_model
  audio = rng.uniform(-0.3, 0.3, 3 * 16000).astype(np.float32)
  stream = streams_lib.Stream('s', audio, (KeywordEvent('yes', 1.0, 1.5),))
  [item] = streams_lib.stream_posteriors(model, params, [stream],
                                         smoothing_ms=100)
  logits = streaming.stream_logits(model, params, audio)
  expected = detector_lib.smooth_posteriors(detector_lib.softmax(logits), 5)
  np.testing.assert_allclose(item.smoothed, expected, atol=1e-6)
  assert item.block_s == 0.02 and item.smoothed.shape == (150, 4)
  points = streams_lib.evaluate(model, params, LABELS, [stream],
                                thresholds=[0.5, 0.9])
  assert [p.occurrences for p in points] == [1, 1]


# -- Mining ----------------------------------------------------------------


def test_mining_keeps_the_windows_of_each_false_accept(tiny_model, monkeypatch):
  model, params = tiny_model
  # Every 20 ms block holds its index / 1000: a window's last sample tells
  # the block it ends with, through int16 rounding.
  audio = ((np.arange(30 * 16000) // 320) / 1000).astype(np.float32)
  stream = streams_lib.Stream('neg', audio, ())
  item = streams_lib.Posteriors(
      stream, peaks_posteriors([('no', 2.0, 2.5, 0.7),
                                ('yes', 20.0, 20.3, 0.97)], 30.0), BLOCK_S)
  monkeypatch.setattr(streams_lib, 'stream_posteriors',
                      lambda *a, **k: [item])
  bank, false_accepts = mining.mine(model, params, LABELS, [stream],
                                    threshold=0.6, window_samples=16000,
                                    smoothing_ms=60)
  assert false_accepts == 2
  # 3 windows (60 ms of 20 ms blocks) per false accept, ending at the blocks
  # up to the one that fired (2.02 s and 20.02 s).
  assert len(bank) == 6 and set(bank.words) == {'_unknown_'}
  end_blocks = [int(round(w[-1] * 1000)) + 1 for w in bank.float_audio()]
  assert end_blocks == [99, 100, 101, 999, 1000, 1001]
  bank_high, count = mining.mine(model, params, LABELS, [stream],
                                 threshold=0.99, window_samples=16000)
  assert (len(bank_high), count) == (0, 0)


def test_mining_refuses_streams_with_keywords(tiny_model):
  model, params = tiny_model
  stream = streams_lib.Stream('kw', np.zeros(16000, np.float32),
                              (KeywordEvent('yes', 0.1, 0.3),))
  with pytest.raises(ValueError, match='keyword-free'):
    mining.mine(model, params, LABELS, [stream], threshold=0.5,
                window_samples=16000)
  with pytest.raises(ValueError, match='threshold=0'):
    mining.mine(model, params, LABELS, [], threshold=0.0, window_samples=16000)


# -- The training loop with a selector -----------------------------------------


def test_training_keeps_the_checkpoint_the_selector_prefers(tiny_data,
                                                            tmp_path):
  calls = []

  def selector(params, accuracy):
    del params
    calls.append(accuracy)
    score = 1.0 if len(calls) == 1 else 0.5  # the first evaluation is best
    return Selection(score, {'frr': 1 - score}, f'score {score}')

  result = train_and_evaluate(tiny_config(tiny_data), str(tmp_path),
                              progress=False, selector=selector)
  assert len(calls) == 2  # steps 3 and 6
  assert result['best_step'] == 3 and result['best_score'] == 1.0
  with open(tmp_path / 'metrics.jsonl', encoding='utf-8') as file:
    rows = [json.loads(line) for line in file]
  chosen = [r for r in rows if r['split'] == 'selection']
  assert [(r['step'], r['score'], r['frr']) for r in chosen] == [
      (3, 1.0, 0.0), (6, 0.5, 0.5)]
  validation = {r['step']: r['accuracy'] for r in rows
                if r['split'] == 'validation'}
  assert result['best_validation_accuracy'] == validation[3]


# -- The manifest ------------------------------------------------------------


def test_manifest_detection_takes_the_operating_point():
  from kws_jax.export import pipeline  # pylint: disable=g-import-not-at-top
  default = pipeline._detection(None)  # pylint: disable=protected-access
  assert (default['threshold'], default['smoothing_ms']) == (
      detector_lib.DEFAULT_THRESHOLD, detector_lib.DEFAULT_SMOOTHING_MS)
  point = {'threshold': 0.97, 'smoothing_ms': 240.0, 'refractory_ms': 1000.0,
           'target_fa_per_hour': 1.0, 'frr': 0.12, 'fa_per_hour': 0.8,
           'validation_hours': 0.83, 'validation_streams': ['v.wav']}
  chosen = pipeline._detection(point)  # pylint: disable=protected-access
  assert (chosen['threshold'], chosen['smoothing_ms'],
          chosen['target_fa_per_hour']) == (0.97, 240.0, 1.0)
  assert chosen['validation']['frr'] == 0.12
  unreached = pipeline._detection(  # pylint: disable=protected-access
      {**point, 'threshold': None})
  assert unreached['threshold'] == detector_lib.DEFAULT_THRESHOLD
