"""eSpeak NG driver, the synthetic dataset generator and the long-stream generator."""

import hashlib
import json
import os
import re

import numpy as np
import pytest

from kws_jax.data import audio, espeak, speech_commands as sc, synth, synth_stream

# --- eSpeak NG ---------------------------------------------------------------------------


def test_voices_and_variants():
  identifiers = {voice.identifier for voice in espeak.english_voices()}
  assert {'gmw/en-US', 'gmw/en', 'gmw/en-GB-scotland'} <= identifiers
  assert 'gmw/en-Shaw' not in identifiers
  us = next(v for v in espeak.english_voices() if v.identifier == 'gmw/en-US')
  assert us.languages[0] == 'en-us'
  assert {'m3', 'f2', 'whisper', 'klatt'} <= set(espeak.variants())
  assert len(espeak.variants()) > 50


@pytest.mark.parametrize(
    'voice, variant',
    [
        ('en-us', None),
        ('en', 'f2'),
        ('en-gb-scotland', 'klatt'),
        ('en-029', 'whisper'),
    ],
)
def test_speak(voice, variant):
  audio_22k = espeak.speak('seven', voice=voice, variant=variant)
  assert audio_22k.dtype == np.float32 and espeak.SAMPLE_RATE == 22050
  assert 0.25 < len(audio_22k) / 22050 < 1.0
  assert 0.05 < np.abs(audio_22k).max() <= 1.0


@pytest.mark.parametrize(
    'variant', [None, 'm3', 'whisper', 'caleb', 'Reed', 'klatt']
)
def test_speak_is_a_pure_function(variant):
  # eSpeak keeps wave-generator state across utterances and draws noise from
  # libc's rand(); speak() must not depend on what ran before.
  first = espeak.speak('backward', voice='en-us', variant=variant, seed=3)
  espeak.speak(
      'something else entirely', voice='en', variant='caleb', rate=300, seed=11
  )
  np.testing.assert_array_equal(
      espeak.speak('backward', voice='en-us', variant=variant, seed=3), first
  )


@pytest.mark.parametrize(
    'parameter, low, high',
    [('rate', 120, 300), ('pitch', 10, 90), ('amplitude', 40, 160)],
)
def test_parameters_take_effect(parameter, low, high):
  slow, fast = (
      espeak.speak('forward', **{parameter: value}) for value in (low, high)
  )
  if parameter == 'rate':
    assert len(slow) > 1.5 * len(fast)
  elif parameter == 'amplitude':
    assert np.sqrt(np.mean(fast**2)) > 2 * np.sqrt(np.mean(slow**2))
  else:
    assert not np.array_equal(slow, fast)


@pytest.mark.parametrize(
    'kwargs, message',
    [
        ({'voice': 'xx-nowhere'}, "no voice 'xx-nowhere'"),
        ({'variant': 'nobody'}, "no variant 'nobody'"),
        ({'rate': 20}, 'rate=20 is outside \\[80, 450\\]'),
        ({'pitch': 101}, 'pitch=101'),
    ],
)
def test_speak_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    espeak.speak('yes', **kwargs)


def test_trim_silence():
  signal = np.zeros(16000, np.float32)
  signal[3200:8000] = 0.5 * np.sin(np.arange(4800) * 0.3)
  assert synth.trim_silence(signal) == (3200, 8000)
  assert synth.trim_silence(np.zeros(1000, np.float32)) == (0, 0)


# --- The synthetic dataset ----------------------------------------------------------------

SMALL = dict(
    words=('yes', 'no'),
    per_word=6,
    unknown_words=('cat', 'wow'),
    per_unknown_word=2,
    num_speakers=4,
    background_noise=False,
    progress=False,
)


def digest(root) -> dict:
  result = {}
  for directory, _, files in sorted(os.walk(root)):
    for name in sorted(files):
      if name.endswith('.wav'):
        with open(os.path.join(directory, name), 'rb') as file:
          result[os.path.relpath(os.path.join(directory, name), root)] = (
              hashlib.sha1(file.read()).hexdigest()
          )
  return result


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
  root = tmp_path_factory.mktemp('synth')
  synth.synthesize_dataset(root, seed=7, workers=2, **SMALL)
  return root


def test_layout(small_set):
  assert sorted(os.listdir(small_set)) == [
      synth.MARKER_FILE,
      'cat',
      'no',
      'wow',
      'yes',
  ]
  ids = {}
  for word, count in (('yes', 6), ('no', 6), ('cat', 2), ('wow', 2)):
    names = sorted(os.listdir(small_set / word))
    assert len(names) == count
    for name in names:
      assert re.fullmatch(r'[0-9a-f]{8}_nohash_\d+\.wav', name)
      ids.setdefault(word, set()).add(name.split('_')[0])
  # 4 speakers say each keyword (6 clips: speakers say it once or twice).
  assert len(ids['yes']) == len(ids['no']) == 4 and ids['yes'] == ids['no']
  assert ids['cat'] <= ids['yes']


def test_clips_are_one_second_and_not_silent(small_set):
  for path in sorted(small_set.glob('*/*.wav')):
    info = audio.probe_wav(path)
    assert (info.sample_rate, info.num_channels, info.num_frames) == (
        16000,
        1,
        16000,
    )
    clip = audio.read_wav(path)
    frames = np.sqrt(np.mean(clip.reshape(100, 160) ** 2, axis=1))
    assert (
        0.04 <= np.abs(clip).max() <= 0.95
    )  # Peak level in [0.05, 0.9] plus the floor.
    # A word: loud frames 30+ dB over the noise floor, for 0.1 to 0.95 s.
    loud = frames > frames.max() * 10 ** (-30 / 20)
    assert 0.1 <= loud.sum() / 100 <= 0.95
    assert (
        np.sort(frames)[:3].mean() < frames.max() / 30
    )  # And a quiet floor around it.


def test_deterministic_regardless_of_workers(small_set, tmp_path):
  synth.synthesize_dataset(tmp_path / 'one', seed=7, workers=1, **SMALL)
  assert digest(tmp_path / 'one') == digest(small_set)
  synth.synthesize_dataset(tmp_path / 'other', seed=8, workers=1, **SMALL)
  other = digest(tmp_path / 'other')
  assert set(other.values()).isdisjoint(digest(small_set).values())


def test_rerun_is_a_no_op_and_an_interrupted_run_resumes(tmp_path):
  root = tmp_path / 'set'
  synth.synthesize_dataset(root, seed=7, workers=1, **SMALL)
  before = digest(root)
  mtimes = {p: os.stat(p).st_mtime_ns for p in root.glob('*/*.wav')}
  synth.synthesize_dataset(root, seed=7, workers=1, **SMALL)
  assert {p: os.stat(p).st_mtime_ns for p in root.glob('*/*.wav')} == mtimes
  # Interrupted: files missing, a stale temporary file, the marker not complete.
  removed = sorted(root.glob('yes/*.wav'))[:3]
  for path in removed:
    path.unlink()
  (root / 'no' / '.x.wav.abc.tmp').write_bytes(b'partial')
  marker = json.loads((root / synth.MARKER_FILE).read_text())
  (root / synth.MARKER_FILE).write_text(
      json.dumps({**marker, 'complete': False})
  )
  synth.synthesize_dataset(root, seed=7, workers=1, **SMALL)
  assert digest(root) == before
  assert not list(root.glob('*/.*.tmp'))


def test_other_settings_into_the_same_directory_is_an_error(small_set):
  with pytest.raises(ValueError, match='other settings.*seed=7'):
    synth.synthesize_dataset(small_set, seed=9, workers=1, **SMALL)


def test_reader_reads_the_synthetic_set(tmp_path):
  root = tmp_path / 'set'
  synth.synthesize_dataset(
      root,
      words=('yes',),
      per_word=40,
      unknown_words=('cat',),
      per_unknown_word=10,
      num_speakers=40,
      seed=0,
      workers=2,
      background_noise=False,
      progress=False,
  )
  dataset = sc.load_speech_commands(root, ('yes',))
  assert dataset.labels == ('_silence_', '_unknown_', 'yes')
  sizes = {split: dataset.label_counts(split)['yes'] for split in sc.SPLITS}
  assert sum(sizes.values()) == 40 and all(sizes.values())
  for split in sc.SPLITS:  # One speaker, one split.
    for example in dataset.split(split):
      if example.path:
        assert sc.which_set(example.path, 10, 10) == split


def test_background_noise_files(tmp_path, monkeypatch):
  monkeypatch.setattr(synth, '_NOISE_SECONDS', 2)
  monkeypatch.setattr(synth, '_BABBLE_SECONDS', 3)
  root = tmp_path / 'set'
  synth.synthesize_dataset(
      root, **{**SMALL, 'background_noise': True}, seed=1, workers=2
  )
  names = sorted(os.listdir(root / '_background_noise_'))
  assert names == [
      'babble_0.wav',
      'babble_1.wav',
      'babble_2.wav',
      'brown_noise.wav',
      'pink_noise.wav',
      'white_noise.wav',
  ]
  spectra = {}
  for name in names:
    noise = audio.read_wav(root / '_background_noise_' / name)
    assert len(noise) == (3 if name.startswith('babble') else 2) * 16000
    assert 0.05 < np.sqrt(np.mean(noise**2)) < 0.2
    spectrum = np.abs(np.fft.rfft(noise[:16000])) ** 2
    spectra[name] = (
        spectrum[100:1000].mean() / spectrum[4000:7000].mean()
    )  # Low/high power.
  assert (
      spectra['white_noise.wav']
      < 2
      < 10
      < spectra['pink_noise.wav']
      < spectra['brown_noise.wav']
  )
  dataset = sc.load_speech_commands(
      root, ('yes', 'no'), validation_percentage=0, testing_percentage=0
  )
  assert len(dataset.background_noise_paths) == 6


# --- The long stream ----------------------------------------------------------------------


def test_stream_ground_truth_is_aligned_on_a_silent_bed(tmp_path, monkeypatch):
  # Without the noise bed and the background talker, the stream is only the
  # foreground events: each labelled interval must start and end on speech.
  monkeypatch.setattr(
      synth_stream,
      'noise_bed',
      lambda n, rng: (np.zeros(n, np.float32), np.zeros(n, np.float32)),
  )
  monkeypatch.setattr(
      synth, 'speech_track', lambda n, rng: np.zeros(n, np.float32)
  )
  events = synth_stream.synthesize_stream(
      tmp_path / 's.wav', 0.5, seed=2, progress=False
  )
  stream = audio.read_wav(tmp_path / 's.wav')
  assert len(stream) == 30 * 16000 and len(events) >= 4
  labels = synth_stream.read_stream_labels(tmp_path / 's.csv')
  assert [label.word for label in labels] == [event.word for event in events]
  for label, event in zip(labels, events):  # The CSV is exact to a sample.
    assert abs(label.start_s - event.start_s) * 16000 < 0.5
    assert abs(label.end_s - event.end_s) * 16000 < 0.5
  for event in labels:
    assert event.word in sc.DEFAULT_WANTED_WORDS
    start, end = round(event.start_s * 16000), round(event.end_s * 16000)
    assert 0.1 < event.end_s - event.start_s < 0.95
    # 1 s around the word (events are >= 1 s apart) is silent outside it.
    assert (
        not stream[start - 16000 // 2 : start].any()
        and not stream[end : end + 16000 // 2].any()
    )
    word = stream[start:end]
    peak = (
        np.sqrt(np.mean(word.reshape(-1, 160) ** 2, axis=1)).max()
        if len(word) >= 160
        else 0
    )
    assert np.sqrt(np.mean(word[:160] ** 2)) >= peak * 10 ** (-41 / 20)
    assert np.sqrt(np.mean(word[-160:] ** 2)) >= peak * 10 ** (-41 / 20)


def test_stream_has_keywords_above_the_background(tmp_path):
  events = synth_stream.synthesize_stream(
      tmp_path / 's.wav', 1.0, seed=3, progress=False
  )
  stream = audio.read_wav(tmp_path / 's.wav')
  assert len(stream) == 60 * 16000 and len(events) >= 8
  ratios = []
  for event in events:
    start, end = round(event.start_s * 16000), round(event.end_s * 16000)
    inside = np.sqrt(np.mean(stream[start:end] ** 2))
    before = np.sqrt(np.mean(stream[max(0, start - 4000) : start - 800] ** 2))
    ratios.append(inside / before)
  assert min(ratios) > 1.0 and np.median(ratios) > 3.0
  # Deterministic for the seed.
  again = synth_stream.synthesize_stream(
      tmp_path / 't.wav', 1.0, seed=3, progress=False
  )
  assert again == events
  np.testing.assert_array_equal(audio.read_wav(tmp_path / 't.wav'), stream)
