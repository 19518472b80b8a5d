"""Negatives: the vocabulary, hard negatives, keyword-free streams, window banks."""

import json
import os

import numpy as np
import pytest

from kws_jax.data import (
    audio, pipeline, speech_commands as sc, synth, synth_stream, vocabulary,
    windows,
)
from kws_jax.data.synth_stream import KeywordEvent, StreamContent

# --- Phonemes and the vocabulary ---------------------------------------------------------


@pytest.mark.parametrize('ipa, expected', [
    ('jˈɛs', ('j', 'ɛ', 's')),
    ('ɡˈo͡ʊ', ('ɡ', 'o͡ʊ')),
    ('fɔː͡ɹ', ('f', 'ɔː͡ɹ')),
    ('kˈɪt͡ʃən', ('k', 'ɪ', 't͡ʃ', 'ə', 'n')),
    ('ɹˌo͡ʊmən tˈuː', ('ɹ', 'o͡ʊ', 'm', 'ə', 'n', 't', 'uː')),
])
def test_split_phonemes(ipa, expected):
  assert vocabulary.split_phonemes(ipa) == expected


@pytest.mark.parametrize('a, b, distance', [
    ('jɛs', 'jɛt', 1), ('kitten', 'sitting', 3), ('', 'abc', 3), ('ab', 'ab', 0),
    ('ab', 'ba', 2), ('flaw', 'lawn', 2),
])
def test_edit_distance(a, b, distance):
  assert vocabulary.edit_distance(tuple(a), tuple(b)) == distance
  assert vocabulary.edit_distance(tuple(b), tuple(a)) == distance


def test_phonemes_of_words_one_tuple_each():
  assert vocabulary.phonemes(['yes', 'go', 'kitchen']) == [
      ('j', 'ɛ', 's'), ('ɡ', 'o͡ʊ'), ('k', 'ɪ', 't͡ʃ', 'ə', 'n')]


def test_frequent_words_are_letters_only_most_frequent_first():
  words = vocabulary.frequent_words(300)
  assert len(words) == len(set(words)) == 300
  assert words[0] == 'the' and 'a' not in words and 'i' not in words
  assert all(word.isalpha() and word.isascii() and len(word) >= 2
             for word in words)
  with pytest.raises(ValueError, match='count=0'):
    vocabulary.frequent_words(0)


@pytest.fixture(scope='module')
def negatives():
  return vocabulary.negative_vocabulary(['yes', 'no', 'right', 'stop'], 2000,
                                        max_distance=2)


def test_homophones_and_extensions_are_left_out(negatives):
  assert 'know' in negatives.homophones['no']
  assert 'write' in negatives.homophones['right']
  assert negatives.extensions['stop'] == ('stopped',)
  assert {'yesterday'} <= set(negatives.extensions['yes'])
  assert {'nobody', 'known'} <= set(negatives.extensions['no'])
  assert not {'know', 'write', 'yes', 'no', 'right', 'stop', 'stopped',
              'yesterday', 'nobody'} & set(negatives.words)
  assert 'stopped' not in negatives.near_misses['stop']


@pytest.mark.parametrize('keyword, near', [
    ('yes', {'yet', 'less', 'guess'}),
    ('no', {'now', 'new', 'show'}),
    ('right', {'night', 'light', 'white'}),
    ('stop', {'top', 'step', 'stock'}),
])
def test_near_misses_are_one_edit_away_for_short_words(negatives, keyword,
                                                       near):
  assert near <= set(negatives.near_misses[keyword])
  sounds = vocabulary.phonemes([keyword])[0]
  reach = min(2, max(1, len(sounds) - 2))
  for word, word_sounds in zip(negatives.near_misses[keyword],
                               vocabulary.phonemes(
                                   negatives.near_misses[keyword])):
    assert 0 < vocabulary.edit_distance(sounds, word_sounds) <= reach, word
  assert set(negatives.all_near_misses()) <= set(negatives.words)


def test_vocabulary_needs_keywords():
  with pytest.raises(ValueError, match='no keywords'):
    vocabulary.negative_vocabulary([], 100)


# --- Hard negatives in the synthetic dataset ---------------------------------------------


def test_hard_negatives_get_their_own_clip_count(tmp_path):
  out = synth.synthesize_dataset(
      tmp_path / 'set', words=('yes',), per_word=4,
      unknown_words=('bed', 'yet'), per_unknown_word=1,
      hard_negatives=('yet', 'less', 'yes'), per_hard_negative=3,
      num_speakers=10, background_noise=False, workers=1, progress=False)
  counts = {word: len(os.listdir(os.path.join(out, word)))
            for word in ('yes', 'bed', 'yet', 'less')}
  assert counts == {'yes': 4, 'bed': 1, 'yet': 3, 'less': 3}
  with open(os.path.join(out, synth.MARKER_FILE), encoding='utf-8') as file:
    config = json.load(file)['config']
  assert config['hard_negatives'] == ['yet', 'less']
  assert config['unknown_words'] == ['bed']
  dataset = sc.load_speech_commands(out, ['yes'], unknown_percentage=1000,
                                    validation_percentage=0,
                                    testing_percentage=0)
  unknown = [e for e in dataset.split('training') if e.label == 1]
  assert len(unknown) == 7


def test_a_set_without_hard_negatives_keeps_its_old_marker(tmp_path):
  out = synth.synthesize_dataset(
      tmp_path / 'set', words=('no',), per_word=2, unknown_words=('bed',),
      per_unknown_word=1, num_speakers=10, background_noise=False, workers=1,
      progress=False)
  with open(os.path.join(out, synth.MARKER_FILE), encoding='utf-8') as file:
    assert 'hard_negatives' not in json.load(file)['config']


@pytest.mark.parametrize('word', ['_unknown_', '.hidden', 'a/b', ''])
def test_words_that_are_no_folder_name_are_refused(tmp_path, word):
  with pytest.raises(ValueError, match='not usable as a folder name'):
    synth.synthesize_dataset(tmp_path, words=('yes',), per_word=1,
                             unknown_words=(word,), background_noise=False,
                             workers=1, progress=False)


# --- Streams ------------------------------------------------------------------------------


def test_keyword_free_stream_says_only_the_content_words(tmp_path,
                                                        monkeypatch):
  spoken = []
  real = synth.speak_trimmed

  def recording(text, *args, **kwargs):
    spoken.append(text)
    return real(text, *args, **kwargs)

  monkeypatch.setattr(synth, 'speak_trimmed', recording)
  monkeypatch.setattr(synth, 'speech_track',
                      lambda n, rng: np.zeros(n, np.float32))
  content = StreamContent(keyword_probability=0.0,
                          distractors=('yet', 'less', 'guess'),
                          sentence_words=('the', 'morning', 'table'))
  events = synth_stream.synthesize_stream(tmp_path / 'n.wav', 0.5, seed=1,
                                          content=content, progress=False)
  assert events == []
  assert synth_stream.read_stream_labels(tmp_path / 'n.csv') == []
  assert len(spoken) >= 6
  words = {word.strip('.!?,') for text in spoken for word in text.split()}
  assert words <= {'yet', 'less', 'guess', 'the', 'morning', 'table'}
  assert {'yet', 'less', 'guess'} & words and 'morning' in words
  # The transcript says what was spoken, in order and without overlaps.
  transcript = synth_stream.read_transcript(
      synth_stream.transcript_path(tmp_path / 'n.csv'))
  # (The last utterance said may not fit the stream, and is not in it.)
  assert [text for text, _, _ in transcript] == spoken[:len(transcript)]
  assert len(spoken) - len(transcript) in (0, 1)
  assert all(0 < start < end for _, start, end in transcript)
  assert all(a[2] < b[1] for a, b in zip(transcript, transcript[1:]))


def test_keywords_inside_sentences_are_located(tmp_path, monkeypatch):
  monkeypatch.setattr(
      synth_stream, 'noise_bed',
      lambda n, rng: (np.zeros(n, np.float32), np.zeros(n, np.float32)))
  monkeypatch.setattr(synth, 'speech_track',
                      lambda n, rng: np.zeros(n, np.float32))
  content = StreamContent(keyword_probability=1.0,
                          in_sentence_probability=1.0)
  events = synth_stream.synthesize_stream(tmp_path / 's.wav', 0.5, seed=4,
                                          words=('yes', 'stop'),
                                          content=content, progress=False)
  stream = audio.read_wav(tmp_path / 's.wav')
  assert len(events) >= 3
  for event in events:
    start, end = round(event.start_s * 16000), round(event.end_s * 16000)
    # Speech before and after the keyword (the sentence), 50-150 ms pauses
    # around it.
    assert stream[start - 16000:start - 800].any()
    assert not stream[start - 800:start].any()
    assert not stream[end:end + 800].any()
    assert stream[end + 2400:end + 16000].any()
    assert 0.1 < event.end_s - event.start_s < 0.95
  # Each keyword lies inside its sentence's transcript row.
  transcript = synth_stream.read_transcript(tmp_path / 's.transcript.csv')
  assert len(transcript) == len(events)
  for event, (text, start, end) in zip(events, transcript):
    assert event.word in text.split() and len(text.split()) >= 3
    assert start < event.start_s < event.end_s <= end + 1e-4


@pytest.mark.parametrize('kwargs, fragment', [
    ({'keyword_probability': 1.5}, r'keyword_probability=1.5'),
    ({'in_sentence_probability': -0.1}, r'in_sentence_probability=-0.1'),
    ({'distractors': ()}, 'distractors is empty'),
])
def test_stream_content_is_checked(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    StreamContent(**kwargs)


def test_keywords_among_distractors_are_refused(tmp_path):
  with pytest.raises(ValueError, match=r'content.distractors holds keywords '
                     r'\(yes\)'):
    synth_stream.synthesize_stream(
        tmp_path / 's.wav', 0.1, words=('yes',),
        content=StreamContent(distractors=('yes', 'yet')), progress=False)


# --- Window banks -------------------------------------------------------------------------


def ramp(seconds: float) -> np.ndarray:
  """A stream whose sample i is i / 2**24: a window's last value is its end."""
  return (np.arange(int(seconds * 16000)) / 2**24).astype(np.float32)


def window_end(window: np.ndarray) -> int:
  return int(round(window[-1] * 2**24)) + 1


def test_cut_windows_counts_and_determinism():
  events = [KeywordEvent('yes', 3.0, 3.5), KeywordEvent('stop', 10.0, 10.4),
            KeywordEvent('no', 0.5, 0.9)]  # its window starts before 0 s
  cut = windows.cut_windows(ramp(20.0), events, 32000,
                            np.random.default_rng(0), negatives=300)
  assert cut.words[:3] == ('yes', 'stop', 'no')
  assert cut.counts() == {'yes': 1, 'stop': 1, 'no': 1, '_unknown_': 300}
  assert not cut.audio[2, :16000].any()  # zeros before the stream's start
  again = windows.cut_windows(ramp(20.0), events, 32000,
                              np.random.default_rng(0), negatives=300)
  np.testing.assert_array_equal(again.audio, cut.audio)


def test_cut_windows_positions(monkeypatch):
  kept = []
  real = windows.from_windows

  def spy(batch, words, rate=16000):
    kept.append(batch.copy())
    return real(batch, words, rate)

  monkeypatch.setattr(windows, 'from_windows', spy)
  events = [KeywordEvent('yes', 3.0, 3.5), KeywordEvent('stop', 10.0, 10.4)]
  bank = windows.cut_windows(ramp(20.0), events, 32000,
                             np.random.default_rng(1), negatives=500)
  ends = [window_end(w) for w in kept[0]]
  for end, event in zip(ends[:2], events):
    assert event.end_s + 0.05 <= end / 16000 <= event.end_s + 0.5
  for end in ends[2:]:
    start = end - 32000
    assert start >= 0
    for event in events:  # no overlap with any keyword
      assert end <= event.start_s * 16000 or start >= event.end_s * 16000
  assert len(bank) == 502


def test_bank_round_trip_and_errors(tmp_path):
  bank = windows.from_windows(np.full((3, 8), 0.5, np.float32),
                              ['yes', '_unknown_', 'no'])
  windows.save_bank(tmp_path / 'b.npz', bank)
  again = windows.load_bank(tmp_path / 'b.npz')
  np.testing.assert_array_equal(again.audio, bank.audio)
  assert again.words == bank.words and again.sample_rate == 16000
  np.testing.assert_allclose(again.float_audio(), 0.5, atol=1e-4)
  with pytest.raises(FileNotFoundError, match='no such window bank'):
    windows.load_bank(tmp_path / 'missing.npz')
  np.savez(tmp_path / 'other.npz', x=np.zeros(3))
  with pytest.raises(ValueError, match='expected a window bank'):
    windows.load_bank(tmp_path / 'other.npz')
  other = windows.from_windows(np.zeros((1, 9), np.float32), ['yes'])
  with pytest.raises(ValueError, match='different'):
    windows.concatenate([bank, other])
  both = windows.concatenate([bank, bank])
  assert len(both) == 6 and both.words == bank.words * 2
  with pytest.raises(ValueError, match='3 windows but 2 words'):
    windows.WindowBank(bank.audio, ('a', 'b'))


@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory):
  return sc.load_speech_commands(
      synth.synthesize_dataset(
          tmp_path_factory.mktemp('set'), words=('yes', 'no'), per_word=12,
          unknown_words=('bed',), per_unknown_word=4, num_speakers=10,
          workers=1, progress=False),
      ['yes', 'no'])


def test_batches_mix_in_bank_windows(tiny_set):
  bank = windows.from_windows(
      np.stack([np.full(16000, v, np.float32) for v in (0.1, 0.2, 0.3)]),
      ['no', '_unknown_', 'something'])
  noise = pipeline.load_background_noise(tiny_set)
  batch = pipeline.train_batch(tiny_set, noise, 5, batch_size=8, seed=1,
                               windows=bank, window_fraction=0.25)
  assert batch['audio'].shape == (8, 16000) and batch['weight'].sum() == 8
  for row in (6, 7):
    value = round(float(batch['audio'][row, 0]), 3)
    assert np.all(np.abs(batch['audio'][row] - value) < 1e-4)
    expected = {0.1: tiny_set.labels.index('no'), 0.2: 1, 0.3: 1}[value]
    assert batch['label'][row] == expected
  again = pipeline.train_batch(tiny_set, noise, 5, batch_size=8, seed=1,
                               windows=bank, window_fraction=0.25)
  np.testing.assert_array_equal(batch['audio'], again['audio'])


@pytest.mark.parametrize('kwargs, fragment', [
    ({'window_fraction': 0.5}, 'no window bank'),
    ({'window_fraction': 1.0, 'windows': 'bank'}, r'in \[0, 1\)'),
    ({'window_fraction': 0.5, 'windows': 'short'}, '8000-sample windows'),
])
def test_window_settings_are_checked(tiny_set, kwargs, fragment):
  banks = {'bank': windows.from_windows(np.zeros((2, 16000), np.float32),
                                        ['yes', 'no']),
           'short': windows.from_windows(np.zeros((2, 8000), np.float32),
                                         ['yes', 'no'])}
  if 'windows' in kwargs:
    kwargs = {**kwargs, 'windows': banks[kwargs['windows']]}
  with pytest.raises(ValueError, match=fragment):
    next(pipeline.train_batches(tiny_set, 8, seed=0, num_threads=1, **kwargs))
