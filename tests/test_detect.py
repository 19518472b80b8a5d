"""Streaming detection: sources, smoothing, trigger, FRR/FA math, runners, CLI."""

import json
import os
import sys
import tracemalloc
import warnings

import jax
import numpy as np
import pytest

from kws_jax import evaluate
from kws_jax.data import audio
from kws_jax.data.synth_stream import KeywordEvent, read_stream_labels
from kws_jax.detect import __main__ as detect_main
from kws_jax.detect import detector as detector_lib
from kws_jax.detect import metrics, runners
from kws_jax.detect.detector import Detection, Detector
from kws_jax.models import build_model
from kws_jax.train import optim, steps
from kws_jax.train.checkpoints import Checkpoints
from kws_jax.train.workdir import write_run_files
from test_train import tiny_config

RATE = 16000
BLOCK = 320
LABELS = ('_silence_', '_unknown_', 'yes', 'no')


def write_wav(path, samples: np.ndarray, rate: int = RATE,
              sample_format: str = 'pcm16') -> str:
  """Writes float ``[frames]`` or ``[frames, channels]`` as 16-bit PCM or
  32-bit float WAV (``audio.write_wav`` writes mono 16-bit only)."""
  samples = np.asarray(samples, np.float64)
  samples = samples[:, None] if samples.ndim == 1 else samples
  if sample_format == 'pcm16':
    tag, data = 1, np.round(samples * 2**15).clip(-2**15, 2**15 - 1).astype(
        '<i2').tobytes()
  else:
    tag, data = 3, samples.astype('<f4').tobytes()
  channels, width = samples.shape[1], 2 if tag == 1 else 4

  def u(value, size):
    return int(value).to_bytes(size, 'little')

  header = b''.join([
      b'RIFF', u(36 + len(data), 4), b'WAVE', b'fmt ', u(16, 4), u(tag, 2),
      u(channels, 2), u(rate, 4), u(rate * channels * width, 4),
      u(channels * width, 2), u(8 * width, 2), b'data', u(len(data), 4)])
  with open(path, 'wb') as file:
    file.write(header + data)
  return str(path)


class ScriptedRunner:
  """Returns given logits ``[blocks, labels]``, one row per call."""

  def __init__(self, logits, labels=LABELS):
    self.logits = np.asarray(logits, np.float32)
    self.labels, self.sample_rate, self.block_samples = labels, RATE, BLOCK
    self.reset()

  def reset(self):
    self.calls = 0

  def __call__(self, block):
    assert block.shape == (BLOCK,) and block.dtype == np.float32
    self.calls += 1
    return self.logits[self.calls - 1]


class ToneRunner:
  """Hears tones: 'yes' is 1 kHz, 'no' 2 kHz (whole cycles per 20 ms block).

  Logit of a keyword = 100 * (amplitude of its tone in the block) - 5, so a
  tone of amplitude 0.3 gives a posterior near 1 and noise one near 0.
  """

  labels, sample_rate, block_samples = LABELS, RATE, BLOCK
  frequencies = {'yes': 1000.0, 'no': 2000.0}

  def reset(self):
    pass

  def __call__(self, block):
    t = np.arange(BLOCK) / RATE
    logits = np.array([0.0, -5.0, 0.0, 0.0], np.float32)
    for word, frequency in self.frequencies.items():
      amplitude = 2 / BLOCK * abs(np.sum(block * np.exp(-2j * np.pi *
                                                        frequency * t)))
      logits[LABELS.index(word)] = 100 * amplitude - 5
    return logits


def posteriors_to_logits(posteriors: np.ndarray) -> np.ndarray:
  """Logits whose softmax is ``posteriors`` (rows summing to 1)."""
  return np.log(np.maximum(posteriors, 1e-30))


def one_hot_rows(words: list[str]) -> np.ndarray:
  return np.eye(len(LABELS))[[LABELS.index(w) for w in words]]


# -- FRR / FA math on hand-made detections -----------------------------------

EVENTS = [KeywordEvent('yes', 1.0, 1.5), KeywordEvent('no', 3.0, 3.4),
          KeywordEvent('yes', 6.0, 6.6)]


@pytest.mark.parametrize('detections, hits, false_accepts, misses', [
    ([], 0, 0, 3),
    ([('yes', 1.2), ('no', 3.3), ('yes', 6.1)], 3, 0, 0),
    ([('yes', 1.0)], 1, 0, 2),  # exactly at the start
    ([('yes', 2.5)], 1, 0, 2),  # exactly at end + 1 s
    ([('yes', 2.52)], 0, 1, 3),  # one block after end + 1 s
    ([('yes', 0.98)], 0, 1, 3),  # before the start
    ([('yes', 1.2), ('yes', 1.6)], 1, 1, 2),  # two for one occurrence
    ([('no', 1.2)], 0, 1, 3),  # wrong word: a false accept and a miss
    ([('yes', 3.2), ('no', 3.2)], 1, 1, 2),  # only the right word matches
    ([('go', 9.0), ('yes', 7.1), ('no', 3.0)], 2, 1, 1),  # unsorted input
])
def test_match_counts_hits_false_accepts_and_misses(detections, hits,
                                                    false_accepts, misses):
  found = [Detection(word, time, 0.9) for word, time in detections]
  assert metrics.match(found, EVENTS) == metrics.Match(hits, false_accepts,
                                                       misses)


@pytest.mark.parametrize('blocks', [107, 109, 111, 113])
def test_match_boundary_holds_for_times_counted_in_blocks(blocks):
  # blocks * 0.02 rounds above end_s + tolerance for these end_s.
  tolerance = metrics.TOLERANCE_S
  time_s = blocks * 0.02
  end_s = round(time_s - tolerance, 5)
  assert time_s > end_s + tolerance
  events = [KeywordEvent('yes', end_s - 0.4, end_s)]
  assert metrics.match([Detection('yes', time_s, 0.9)], events).hits == 1
  later = Detection('yes', (blocks + 1) * 0.02, 0.9)
  assert metrics.match([later], events).hits == 0


def test_match_pairs_overlapping_windows_to_match_the_most():
  # 1.7 s lies in both windows ([1.0, 2.0] and [1.6, 2.5]); taking the
  # window that closes first leaves the second for the detection at 2.1 s.
  events = [KeywordEvent('yes', 1.0, 1.5), KeywordEvent('yes', 1.6, 2.0)]
  found = [Detection('yes', 2.1, 0.9), Detection('yes', 1.7, 0.9)]
  assert metrics.match(found, events) == metrics.Match(2, 0, 0)


def peaks(spec: list[tuple[str, float, float, float]], seconds: float
          ) -> np.ndarray:
  """Smoothed posteriors ``[blocks, 4]``: silence, with plateaus ``(word,
  from_s, to_s, height)`` on blocks ending in [from_s, to_s)."""
  rows = np.zeros((int(round(seconds / 0.02)), len(LABELS)), np.float32)
  rows[:, 0] = 1.0
  ends = (np.arange(len(rows)) + 1) * 0.02
  for word, start, stop, height in spec:
    inside = (ends >= start - 1e-9) & (ends < stop - 1e-9)
    rows[inside] = 0.0
    rows[inside, LABELS.index(word)] = height
    rows[inside, 0] = 1.0 - height
  return rows


# One hour; 'yes' at 10 s (peak 0.9) and 100 s (peak 0.7) are real, the 'no'
# peak (0.6) at 200 s and the 'yes' peak (0.95) at 300 s are not.
SWEEP_EVENTS = [KeywordEvent('yes', 10.0, 10.5),
                KeywordEvent('yes', 100.0, 100.5)]
SWEEP_PEAKS = [('yes', 10.2, 10.5, 0.9), ('yes', 100.2, 100.5, 0.7),
               ('no', 200.0, 200.3, 0.6), ('yes', 300.0, 300.3, 0.95)]


@pytest.mark.parametrize('threshold, false_accepts, misses', [
    (0.5, 2, 0), (0.65, 1, 0), (0.8, 1, 1), (0.92, 1, 2), (0.96, 0, 2)])
def test_sweep_frr_and_false_accepts_per_hour(threshold, false_accepts,
                                              misses):
  smoothed = peaks(SWEEP_PEAKS, 3600.0)
  [point] = metrics.sweep(smoothed, LABELS, 0.02, SWEEP_EVENTS,
                          thresholds=[threshold])
  assert (point.false_accepts, point.misses, point.occurrences) == (
      false_accepts, misses, 2)
  assert point.hours == pytest.approx(1.0)
  assert point.frr == misses / 2
  assert point.fa_per_hour == pytest.approx(false_accepts)


@pytest.mark.parametrize('budget, threshold, frr', [
    (0.5, 0.96, 1.0),  # only the threshold without false accepts
    (1.0, 0.65, 0.0),  # 0.65, 0.8, 0.92 give 1 FA/h; 0.65 misses nothing
    (2.0, 0.65, 0.0),  # 0.5 has FRR 0 too but 2 FA/h: ties go to fewer FAs
])
def test_frr_at_budget_is_the_lowest_frr_within_it(budget, threshold, frr):
  points = metrics.sweep(peaks(SWEEP_PEAKS, 3600.0), LABELS, 0.02,
                         SWEEP_EVENTS, thresholds=[0.5, 0.65, 0.8, 0.92, 0.96])
  best = metrics.frr_at(points, budget)
  assert (best.threshold, best.frr) == (threshold, frr)
  assert metrics.frr_at(points[:1], 1.0) is None  # 2 FA/h is over budget


def test_sweep_warns_about_words_the_model_does_not_spot():
  events = SWEEP_EVENTS + [KeywordEvent('left', 50.0, 50.4)]
  with pytest.warns(UserWarning, match='left'):
    [point] = metrics.sweep(peaks(SWEEP_PEAKS, 600.0), LABELS, 0.02, events,
                            thresholds=[0.5])
  assert point.occurrences == 2


def test_results_files_agree(tmp_path):
  points = metrics.sweep(peaks(SWEEP_PEAKS, 3600.0), LABELS, 0.02,
                         SWEEP_EVENTS, thresholds=[0.5, 0.65, 0.96])
  paths = metrics.write_results(points, str(tmp_path / 'eval'),
                                {'wav': 'stream.wav'})
  with open(paths['json'], encoding='utf-8') as file:
    report = json.load(file)
  assert report['frr_at_fa_per_hour']['1']['threshold'] == 0.65
  assert report['frr_at_fa_per_hour']['0.5']['frr'] == 1.0
  assert [p['false_accepts'] for p in report['points']] == [2, 1, 0]
  with open(paths['csv'], encoding='utf-8') as file:
    lines = file.read().splitlines()
  assert lines[0].startswith('threshold,detections,false_accepts,misses')
  assert [line.split(',')[0] for line in lines[1:]] == ['0.5', '0.65', '0.96']
  with open(paths['png'], 'rb') as file:
    assert file.read(8) == b'\x89PNG\r\n\x1a\n'
  assert 'FRR at 1 FA/h: 0.00% (threshold 0.65' in metrics.summary(points)


# -- Smoothing and refractory on scripted logits -----------------------------


def test_smoothing_is_the_mean_of_the_last_window_of_posteriors():
  posteriors = one_hot_rows(['_silence_'] * 3 + ['yes'] * 5)
  detector = Detector(ScriptedRunner(posteriors_to_logits(posteriors)),
                      smoothing_ms=60, threshold=0.6, refractory_ms=1000)
  fired, smoothed = [], []
  for _ in range(len(posteriors)):
    fired.append(detector(np.zeros(BLOCK, np.float32)))
    smoothed.append(detector.smoothed[LABELS.index('yes')])
  # 3 blocks: 0, 0, 0, 1/3, 2/3, 1, 1, 1.
  np.testing.assert_allclose(smoothed, [0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1],
                             atol=1e-6)
  assert [d for d in fired if d] == [
      Detection('yes', pytest.approx(0.1), pytest.approx(2 / 3))]


def test_smoothing_averages_the_rows_so_far_at_the_start():
  posteriors = one_hot_rows(['yes', '_silence_', '_silence_', '_silence_'])
  detector = Detector(ScriptedRunner(posteriors_to_logits(posteriors)),
                      smoothing_ms=60, threshold=0.9)
  smoothed = []
  for _ in range(4):
    detector(np.zeros(BLOCK, np.float32))
    smoothed.append(detector.smoothed[LABELS.index('yes')])
  np.testing.assert_allclose(smoothed, [1, 1 / 2, 1 / 3, 0], atol=1e-6)


# 'yes' rises at blocks 0, 10 and 45, 'no' at 15.
@pytest.mark.parametrize('refractory_ms, expected', [
    (100, [('yes', 0.02), ('yes', 0.22), ('no', 0.32), ('yes', 0.92)]),
    (200, [('yes', 0.02), ('yes', 0.22), ('no', 0.32), ('yes', 0.92)]),
    # The second 'yes' comes 10 blocks after the first: dropped, though it
    # stays above the threshold; 'no' fires, and then 'yes' may again.
    (220, [('yes', 0.02), ('no', 0.32), ('yes', 0.92)]),
    (2000, [('yes', 0.02), ('no', 0.32), ('yes', 0.92)]),
])
def test_refractory_holds_back_the_keyword_that_fired_last(refractory_ms,
                                                           expected):
  words = (['yes'] * 5 + ['_silence_'] * 5 + ['yes'] * 3 + ['_silence_'] * 2
           + ['no'] * 3 + ['_unknown_'] * 27 + ['yes'] * 3)
  runner = ScriptedRunner(posteriors_to_logits(one_hot_rows(words)))
  detector = Detector(runner, smoothing_ms=20, threshold=0.5,
                      refractory_ms=refractory_ms)
  found = list(detector.feed([np.zeros(BLOCK * len(words), np.float32)]))
  assert [(d.word, round(d.time_s, 6)) for d in found] == expected
  assert all(d.score == pytest.approx(1.0) for d in found)


def test_silence_and_unknown_never_fire():
  words = ['_silence_'] * 3 + ['_unknown_'] * 3 + ['_silence_'] * 3
  detector = Detector(ScriptedRunner(posteriors_to_logits(
      one_hot_rows(words))), smoothing_ms=20, threshold=0.5)
  assert not list(detector.feed([np.zeros(BLOCK * 9, np.float32)]))


@pytest.mark.parametrize('threshold', [0.3, 0.6, 0.9])
def test_push_detector_equals_the_sweep_on_recorded_posteriors(threshold):
  rng = np.random.default_rng(3)
  logits = np.cumsum(rng.normal(0, 0.8, (3000, len(LABELS))), axis=0) % 9
  detector = Detector(ScriptedRunner(logits), threshold=threshold,
                      smoothing_ms=100, refractory_ms=500, record=True)
  pushed = list(detector.feed([np.zeros(BLOCK * len(logits), np.float32)]))
  swept = metrics.detections_at(detector.recorded(), LABELS, 0.02, threshold,
                                500)
  assert len(pushed) > 5
  assert [(d.word, d.time_s) for d in pushed] == [
      (d.word, pytest.approx(d.time_s)) for d in swept]


@pytest.mark.parametrize('kwargs, fragment', [
    ({'threshold': 0.0}, 'threshold is 0.0'),
    ({'threshold': 1.5}, 'threshold is 1.5'),
    ({'smoothing_ms': 5}, 'smoothing_ms is 5 ms = 0 blocks'),
    ({'refractory_ms': 0}, 'refractory_ms is 0 ms = 0 blocks'),
    ({'smoothing_ms': float('nan')}, 'smoothing_ms is nan ms, expected 0 to'),
    ({'smoothing_ms': float('inf')}, 'smoothing_ms is inf ms'),
    ({'smoothing_ms': 1e12}, 'smoothing_ms is 1e[+]12 ms'),
    ({'refractory_ms': float('inf')}, 'refractory_ms is inf ms'),
    ({'smoothing_ms': -300}, 'smoothing_ms is -300 ms'),
])
def test_detector_settings_are_checked(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    Detector(ScriptedRunner(np.zeros((1, 4))), **kwargs)


def test_labels_without_keywords_are_refused():
  with pytest.raises(ValueError, match='hold no keyword'):
    Detector(ScriptedRunner(np.zeros((1, 2)), labels=LABELS[:2]))


# -- Audio sources ----------------------------------------------------------


@pytest.mark.parametrize('sample_format', ['pcm16', 'float32'])
@pytest.mark.parametrize('channels', [1, 2])
def test_chunks_equal_reading_at_once(tmp_path, rng, sample_format, channels):
  samples = rng.uniform(-0.9, 0.9, (RATE * 3 + 123, channels))
  path = write_wav(tmp_path / 'a.wav', samples, RATE, sample_format)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    chunks = list(detector_lib.wav_chunks(path, chunk_seconds=0.7))
    whole = audio.read_wav(path)
  messages = [str(w.message) for w in caught]
  if channels == 2:  # one warning each from wav_chunks and read_wav
    assert messages == [f'{path}: mixed 2 channels down to mono'] * 2
  else:
    assert not messages
  assert [len(c) for c in chunks] == [11200] * 4 + [3323]
  np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_other_rates_are_resampled_chunk_wise_with_one_warning(tmp_path, rng):
  t = np.arange(44100 * 3) / 44100
  samples = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.normal(size=len(t))
  path = write_wav(tmp_path / 'b.wav', samples, 44100, 'float32')
  with pytest.warns(audio.AudioConversionWarning) as caught:
    chunks = list(detector_lib.wav_chunks(path, chunk_seconds=0.5))
  assert [str(w.message) for w in caught] == [
      f'{path}: resampled from 44100 Hz to 16000 Hz']
  with pytest.warns(audio.AudioConversionWarning):
    whole = audio.read_wav(path)
  streamed = np.concatenate(chunks)
  assert len(streamed) == len(whole) == 48000
  assert np.max(np.abs(streamed - whole)) < 1e-3


def test_header_errors_come_at_the_call(tmp_path):
  with pytest.raises(FileNotFoundError, match='missing.wav'):
    detector_lib.wav_chunks(tmp_path / 'missing.wav')
  (tmp_path / 'text.wav').write_text('hello')
  with pytest.raises(audio.AudioFileError, match='not a WAV file'):
    detector_lib.wav_chunks(tmp_path / 'text.wav')


def test_reader_decodes_only_as_it_is_consumed(tmp_path):
  path = write_wav(tmp_path / 'c.wav', np.full(RATE * 4, 0.25))
  chunks = detector_lib.wav_chunks(path, chunk_seconds=1.0)
  first = next(chunks)
  with open(path, 'r+b') as file:  # overwrite the samples after the first s
    file.seek(44 + 2 * RATE)
    file.write(np.full(RATE * 3, -2**14, '<i2').tobytes())
  rest = np.concatenate(list(chunks))
  np.testing.assert_array_equal(first, 0.25)
  np.testing.assert_array_equal(rest, -0.5)


def test_streaming_a_long_file_holds_a_few_chunks(tmp_path):
  seconds = 120  # 3.8 MB of int16, 7.7 MB as float32
  path = write_wav(tmp_path / 'long.wav', np.full(RATE * seconds, 0.1))
  tracemalloc.start()
  try:
    count = 0
    for block in detector_lib.blocks(detector_lib.wav_chunks(path), BLOCK):
      count += 1
      assert block.shape == (BLOCK,)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert count == RATE * seconds // BLOCK
  assert peak < 10 * 4 * RATE  # less than 10 one-second float32 chunks


@pytest.mark.parametrize('sizes', [[320] * 3, [1, 700, 5, 0, 250], [2000]])
def test_blocks_regroup_any_chunk_sizes(rng, sizes):
  audio_in = rng.normal(size=sum(sizes)).astype(np.float32)
  chunks = np.split(audio_in, np.cumsum(sizes)[:-1])
  out = list(detector_lib.blocks(chunks, BLOCK))
  assert all(b.shape == (BLOCK,) and b.dtype == np.float32 for b in out)
  padded = np.pad(audio_in, (0, -len(audio_in) % BLOCK))
  np.testing.assert_array_equal(np.concatenate(out), padded)


def test_mic_without_sounddevice_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, 'sounddevice', None)
  with pytest.raises(ModuleNotFoundError, match='pip install sounddevice'):
    detector_lib.mic_chunks()


# -- The detector on a generated stream --------------------------------------


def tone_stream(tmp_path, rate: int = RATE, channels: int = 1,
                sample_format: str = 'pcm16') -> tuple[str, str]:
  """20 s of noise with 'yes' and 'no' tones and a 3 kHz distractor; the
  ground truth CSV in the stream generator's format."""
  rng = np.random.default_rng(0)
  events = [('yes', 1.3, 1.7), ('no', 3.0, 3.5), ('yes', 4.2, 4.6),
            ('no', 9.05, 9.45), ('yes', 15.5, 16.1)]
  t = np.arange(20 * rate) / rate
  signal = 0.02 * rng.normal(size=len(t))
  for word, start, end in events + [('distractor', 12.0, 12.6)]:
    frequency = ToneRunner.frequencies.get(word, 3000.0)
    inside = (t >= start) & (t < end)
    signal[inside] += 0.3 * np.sin(2 * np.pi * frequency * t[inside])
  samples = np.repeat(signal[:, None], channels, axis=1)
  wav = write_wav(tmp_path / f'stream_{rate}_{channels}.wav', samples, rate,
                  sample_format)
  csv_path = tmp_path / 'stream.csv'
  csv_path.write_text('word,start_s,end_s\n' + ''.join(
      f'{w},{s:.5f},{e:.5f}\n' for w, s, e in events))
  return wav, str(csv_path)


@pytest.mark.parametrize('rate, channels, sample_format', [
    (RATE, 1, 'pcm16'), (44100, 2, 'float32'), (8000, 1, 'pcm16')])
def test_detector_finds_keywords_at_known_times(tmp_path, rate, channels,
                                                sample_format):
  wav, csv_path = tone_stream(tmp_path, rate, channels, sample_format)
  events = read_stream_labels(csv_path)
  detector = Detector(ToneRunner(), record=True)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', audio.AudioConversionWarning)
    found = list(detector_lib.detect_wav(detector, wav))
  assert [d.word for d in found] == [e.word for e in events]
  for detection, event in zip(found, events):
    # 300 ms smoothing of a posterior near 1 crosses 0.8 after ~240 ms.
    assert event.start_s + 0.2 <= detection.time_s <= event.start_s + 0.3
  assert detector.time_s == pytest.approx(20.0)
  [point] = metrics.sweep(detector.recorded(), LABELS, 0.02, events,
                          thresholds=[0.8])
  assert (point.frr, point.false_accepts) == (0.0, 0)


# -- The JAX runner --------------------------------------------------------


def make_workdir(path, preprocess: str, checkpoint: bool = True) -> str:
  """A run of the tiny test CNN with random weights, as training leaves it."""
  config = tiny_config('unused')
  config.model.preprocess = preprocess
  model = build_model(config)
  workdir = str(path)
  write_run_files(workdir, config, list(LABELS), 'summary\n')
  if checkpoint:
    optimizer = optim.make_optimizer(
        config.optimizer, optim.learning_rate_schedule(config.schedule))
    checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'), 1)
    checkpoints.offer_best(steps.init_state(model, optimizer, 7), 0.5)
    checkpoints.close()
  return workdir


@pytest.mark.parametrize('preprocess', ['raw', 'mfcc'])
def test_jax_runner_streams_the_model_of_a_workdir(tmp_path, rng, preprocess):
  runner = runners.JaxRunner.from_workdir(make_workdir(tmp_path, preprocess))
  assert (runner.labels, runner.sample_rate, runner.block_samples) == (
      LABELS, RATE, BLOCK)
  stream = rng.uniform(-0.5, 0.5, 60 * BLOCK).astype(np.float32)
  logits = np.stack([runner(b) for b in stream.reshape(-1, BLOCK)])
  assert logits.shape == (60, 4) and logits.dtype == np.float32
  model = runner.model
  full_window = jax.jit(
      lambda x: model.logits(runner.params, evaluate.model_input(model, x)))
  for block in (49, 59):  # windows of 50 blocks = 1 s, ending at `block`
    window = stream[(block - 49) * BLOCK:(block + 1) * BLOCK][None]
    expected = full_window(window)[0]
    np.testing.assert_allclose(logits[block], expected, atol=1e-4)
  runner.reset()
  np.testing.assert_allclose(runner(stream[:BLOCK]), logits[0], atol=1e-6)
  with pytest.raises(ValueError, match=r'shape \(321,\).*expected \(320,\)'):
    runner(np.zeros(321, np.float32))


def test_jax_runner_checks_labels(tmp_path):
  model = build_model(tiny_config('unused'))
  with pytest.raises(ValueError, match='3 labels'):
    runners.JaxRunner(model, model.init(jax.random.key(0)), LABELS[:3])


# -- Command line ----------------------------------------------------------


@pytest.fixture
def no_xla_defaults(monkeypatch):
  monkeypatch.setenv('KWS_JAX_XLA_DEFAULTS', '0')


def run_cli(argv) -> str:
  """Runs the CLI in this process; returns its one-line error."""
  with pytest.raises(SystemExit) as exit_info:
    detect_main.main(argv)
  return str(exit_info.value.code)


@pytest.mark.usefixtures('no_xla_defaults')
def test_cli_bad_input_gives_one_line_errors(tmp_path, monkeypatch):
  wav, _ = tone_stream(tmp_path)
  no_checkpoint = make_workdir(tmp_path / 'run', 'mfcc', checkpoint=False)
  (tmp_path / 'text.wav').write_text('hello')
  (tmp_path / 'model.tflite').write_bytes(b'')
  monkeypatch.setitem(sys.modules, 'sounddevice', None)
  cases = [
      (['--workdir', no_checkpoint, '--wav', str(tmp_path / 'no.wav')],
       'no.wav: no such audio file'),
      (['--workdir', no_checkpoint, '--wav', str(tmp_path / 'text.wav')],
       'text.wav: not a WAV file'),
      (['--workdir', no_checkpoint, '--wav', wav],
       'has no readable best checkpoint'),
      (['--workdir', str(tmp_path / 'nothing'), '--wav', wav],
       'holds no training run'),
      (['--model', str(tmp_path / 'model.tflite'), '--wav', wav],
       'manifest.json: not found'),
      (['--model', str(tmp_path / 'no.tflite'), '--wav', wav],
       'no.tflite: no such model file'),
      (['--model', str(tmp_path / 'model.tflite'), '--mic'],
       'pip install sounddevice'),
  ]
  for argv, fragment in cases:
    message = run_cli(argv)
    assert message.startswith('error: ') and fragment in message, argv
    assert '\n' not in message


@pytest.mark.usefixtures('no_xla_defaults')
def test_cli_usage_errors(tmp_path, capsys):
  for argv, fragment in [
      (['--wav', 'a.wav'], 'one of the arguments --workdir --model'),
      (['--workdir', 'w', '--wav', 'a.wav', '--labels-csv', 'a.csv'],
       '--labels-csv needs --out'),
  ]:
    assert run_cli(argv) == '2'
    assert fragment in capsys.readouterr().err


@pytest.mark.usefixtures('no_xla_defaults')
def test_cli_detects_and_evaluates(tmp_path, capsys):
  wav, csv_path = tone_stream(tmp_path)
  workdir = make_workdir(tmp_path / 'run', 'raw')
  out = tmp_path / 'eval'
  detect_main.main(['--workdir', workdir, '--wav', wav, '--threshold', '0.3',
                    '--labels-csv', csv_path, '--out', str(out)])
  printed = capsys.readouterr().out
  assert 'detections in 20.0 s of audio (threshold 0.3, smoothing 300 ms' in (
      printed)
  assert 'FRR at 0.5 FA/h' in printed and 'FRR at 1 FA/h' in printed
  with open(out / 'streaming_eval.json', encoding='utf-8') as file:
    report = json.load(file)
  assert report['duration_s'] == pytest.approx(20.0)
  assert len(report['points']) == len(metrics.DEFAULT_THRESHOLDS)
  assert all(p['occurrences'] == 5 for p in report['points'])
  assert (out / 'det_curve.png').exists()
  assert (out / 'streaming_eval.csv').exists()
  # Ground truth of words the model does not spot: refused, not "FRR 0%".
  other = tmp_path / 'other.csv'
  other.write_text('word,start_s,end_s\nbanana,1.0,1.5\n')
  with pytest.raises(SystemExit, match='none of which the model spots'):
    detect_main.main(['--workdir', workdir, '--wav', wav, '--labels-csv',
                      str(other), '--out', str(tmp_path / 'eval2')])


def test_operating_point_round_trips_through_its_dict():
  point = metrics.OperatingPoint(0.9, 7, 2, 3, 8, 0.5)
  row = point.as_dict()
  assert (row['frr'], row['fa_per_hour']) == (3 / 8, 4.0)
  assert metrics.OperatingPoint.from_dict(row) == point
