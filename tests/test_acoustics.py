"""Real-world acoustics: rooms, noise at an SNR, channels, streams, batches."""

import dataclasses
import os

import numpy as np
import pytest
import scipy.signal

from kws_jax import config as kws_config
from kws_jax.data import acoustics as ac
from kws_jax.data import audio, noise as noise_lib, pipeline, render_acoustics
from kws_jax.data import speech_commands as sc
from kws_jax.train import loop

RATE = 16000


@pytest.fixture(scope='module')
def rooms():
  # Small, short rooms keep the simulation under a second.
  return ac.make_rooms(3, seed=0, rt60=(0.15, 0.3), max_seconds=0.25,
                       progress=False)


def bursts(count: int, samples: int, seed: int = 0) -> np.ndarray:
  """float32 [count, samples]: silence, then a noise burst in the middle."""
  x = np.zeros((count, samples), np.float32)
  x[:, samples // 2:samples // 2 + samples // 8] = 0.1 * np.random.default_rng(
      seed).standard_normal((count, samples // 8))
  return x


def quiet(acoustics_draws: ac.Draws, **changes) -> ac.Draws:
  """The draws with every step off except those in `changes`."""
  count = len(acoustics_draws.room)
  off = dict(room=np.full(count, -1), noise=np.full(count, -1),
             microphone=(None,) * count, telephone=np.zeros(count, bool),
             gain_db=np.zeros(count))
  off.update(changes)
  return dataclasses.replace(acoustics_draws, **off)


def test_rooms_start_at_the_direct_path_and_ring(rooms):
  assert rooms.responses.shape == (3, 4000)
  assert np.all(rooms.responses[:, 0] == 1.0)
  assert np.all(np.abs(rooms.responses[:, 1:]).max(axis=1) < 1.0)
  assert np.all((rooms.rt60 >= 0.15) & (rooms.rt60 <= 0.3))
  assert np.all(rooms.distance >= 0.5)
  # Energy decays: the last 50 ms hold far less than the first 50 ms.
  energy = rooms.responses**2
  assert np.all(energy[:, -800:].sum(1) < 1e-2 * energy[:, :800].sum(1))


def test_reverberation_keeps_the_word_in_place_and_its_level(rooms):
  dry = bursts(3, 8000)
  wet = ac.reverberate(dry, rooms.responses)
  assert wet.shape == dry.shape
  np.testing.assert_allclose(np.sqrt((wet**2).mean(1)),
                             np.sqrt((dry**2).mean(1)), rtol=1e-4)
  for row in range(3):  # The direct path may fall between two samples.
    lags = scipy.signal.correlation_lags(8000, 8000)
    assert lags[np.argmax(scipy.signal.correlate(wet[row], dry[row]))] in (0, 1)
  assert np.abs(wet[:, :4000]).max() < 1e-6  # Nothing before the word.
  assert np.all(np.abs(wet[:, 5000:5500]).max(1) > 1e-3)  # It rings on.
  tails = ac.reverberate(dry, rooms.responses, keep_tail=True)
  assert tails.shape == (3, 8000 + 4000 - 1)


@pytest.mark.parametrize('snr_db', [0.0, 7.5, 20.0])
def test_noise_is_mixed_at_the_drawn_snr(snr_db):
  acoustics = ac.Acoustics(snr_db=(snr_db, snr_db), noise_probability=1.0)
  clean = bursts(4, 8000)
  noise = [np.random.default_rng(1).standard_normal(20000).astype(np.float32)]
  draws = acoustics.draw(np.random.default_rng(0), 4, 8000, 0, [20000])
  mixed = acoustics.apply(clean, np.zeros(4, bool),
                          quiet(draws, noise=draws.noise), None, noise)
  added = mixed - clean
  measured = 20 * np.log10(ac.active_rms(clean) /
                           np.sqrt((added**2).mean(1)))
  np.testing.assert_allclose(measured, snr_db, atol=1e-3)


def test_silence_rows_get_noise_at_the_drawn_level():
  acoustics = ac.Acoustics(silence_dbfs=(-30.0, -30.0), noise_probability=1.0)
  noise = [np.random.default_rng(1).standard_normal(20000).astype(np.float32)]
  draws = acoustics.draw(np.random.default_rng(0), 2, 8000, 0, [20000])
  out = acoustics.apply(bursts(2, 8000), np.ones(2, bool),
                        quiet(draws, noise=draws.noise), None, noise)
  np.testing.assert_allclose(20 * np.log10(np.sqrt((out**2).mean(1))), -30.0,
                             atol=1e-3)


def band_energy_db(x: np.ndarray, low: float, high: float) -> float:
  frequencies, power = scipy.signal.welch(x, RATE, nperseg=1024)
  inside = (frequencies >= low) & (frequencies < high)
  return 10 * np.log10(power[inside].sum())


def test_telephone_keeps_the_voice_band_only():
  white = np.random.default_rng(0).uniform(-0.5, 0.5, (1, RATE)).astype(
      np.float32)
  acoustics = ac.Acoustics()
  draws = acoustics.draw(np.random.default_rng(0), 1, RATE, 0, [])
  phone = acoustics.apply(white, np.zeros(1, bool),
                          quiet(draws, telephone=np.ones(1, bool)), None, [])
  passband = band_energy_db(phone[0], 500, 3000) - band_energy_db(
      white[0], 500, 3000)
  assert abs(passband) < 1.5
  for low, high in ((20, 150), (5000, 8000)):
    assert band_energy_db(phone[0], low, high) < band_energy_db(
        white[0], low, high) - 25


def test_mu_law_quantizes_to_eight_bits_relatively():
  x = np.linspace(-1, 1, 10001).astype(np.float32)
  y = ac.mu_law(x)
  assert len(np.unique(y)) <= 255
  loud = np.abs(x) > 0.1
  assert np.max(np.abs(y - x)[loud] / np.abs(x[loud])) < 0.04
  np.testing.assert_array_equal(ac.mu_law(np.array([2.0, -3.0])), [1.0, -1.0])


@pytest.mark.parametrize('frequency, gain_db, q', [(300, 6, 1), (2000, -10, 3),
                                                   (5000, 9.5, 0.7)])
def test_peaking_filter_gain_at_its_centre(frequency, gain_db, q):
  sos = ac.peaking_filter(frequency, gain_db, q, RATE)
  _, response = scipy.signal.sosfreqz(sos, [frequency, 20, 7900], fs=RATE)
  np.testing.assert_allclose(20 * np.log10(np.abs(response[0])), gain_db,
                             atol=1e-6)
  assert np.all(np.abs(20 * np.log10(np.abs(response[1:]))) < abs(gain_db) / 2)


def test_random_microphones_are_stable_and_differ():
  acoustics = ac.Acoustics(microphone_probability=1.0)
  draws = acoustics.draw(np.random.default_rng(0), 8, 4000, 0, [])
  for sos in draws.microphone:
    _, poles, _ = scipy.signal.sos2zpk(sos)
    assert np.all(np.abs(poles) < 1)
  x = bursts(8, 4000)
  out = acoustics.apply(x, np.zeros(8, bool),
                        quiet(draws, microphone=draws.microphone), None, [])
  assert np.all(np.isfinite(out))
  assert len({round(float(v), 5) for v in (out**2).sum(1)}) == 8


def test_gain_scales_and_loud_gains_clip():
  acoustics = ac.Acoustics()
  draws = acoustics.draw(np.random.default_rng(0), 2, 4000, 0, [])
  x = bursts(2, 4000)
  out = acoustics.apply(x, np.zeros(2, bool),
                        quiet(draws, gain_db=np.array([-6.0, 40.0])), None, [])
  np.testing.assert_allclose(out[0], x[0] * 10**(-6 / 20), rtol=1e-5)
  assert out[1].max() == 1.0 and out[1].min() == -1.0


def test_augment_is_a_pure_function_of_the_generator(rooms):
  noise = [np.random.default_rng(1).standard_normal(20000).astype(np.float32)]
  x, silence = bursts(6, 8000), np.array([0, 0, 0, 0, 0, 1], bool)
  first, again, other = (
      ac.Acoustics().augment(x, silence, noise, np.random.default_rng(seed),
                             rooms)
      for seed in (0, 0, 1))
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  assert first.dtype == np.float32 and np.abs(first).max() <= 1.0


@pytest.mark.parametrize('field, value, message', [
    ('room_probability', 1.5, 'room_probability=1.5, expected a probability'),
    ('telephone_probability', -0.1, 'telephone_probability=-0.1'),
    ('snr_db', (20.0, 0.0), r'snr_db=\(20.0, 0.0\), expected low <= high'),
])
def test_bad_settings_are_refused(field, value, message):
  with pytest.raises(ValueError, match=message):
    ac.Acoustics(**{field: value})


def test_noise_shorter_than_the_clip_is_refused():
  with pytest.raises(ValueError, match='noise recordings of 100 samples'):
    ac.Acoustics().draw(np.random.default_rng(0), 2, 4000, 0, [100])


def test_room_bank_round_trip_and_cache(tmp_path, rooms):
  path = tmp_path / 'rooms.npz'
  ac.save_rooms(path, rooms)
  loaded = ac.load_rooms(path)
  np.testing.assert_array_equal(loaded.responses, rooms.responses)
  assert (loaded.seed, loaded.sample_rate) == (0, RATE)
  assert ac.load_or_make_rooms(path, 3, 0).responses.shape == (3, 4000)
  with pytest.raises(ValueError, match='3 rooms from seed 0, expected 5'):
    ac.load_or_make_rooms(path, 5, 0)
  with pytest.raises(FileNotFoundError, match='no such room bank'):
    ac.load_rooms(tmp_path / 'missing.npz')
  np.savez(tmp_path / 'other.npz', audio=np.zeros(3))
  with pytest.raises(ValueError, match='expected a room bank'):
    ac.load_rooms(tmp_path / 'other.npz')


def test_stream_segments_ring_into_the_next(rooms):
  stream = np.zeros(3 * RATE, np.float32)
  stream[RATE - 200:RATE] = 0.5  # A burst at the end of the first segment.
  always = ac.Acoustics(room_probability=1.0, noise_probability=0.0,
                        microphone_probability=0.0, telephone_probability=0.0,
                        gain_db=(0.0, 0.0))
  out = ac.apply_to_stream(stream, always, np.random.default_rng(0), rooms, [],
                           segment_seconds=1.0, segments_per_batch=2)
  assert out.shape == stream.shape
  assert np.abs(out[RATE:RATE + 1000]).max() > 1e-3  # The tail, next segment.
  assert np.abs(out[:RATE - 200]).max() < 1e-6  # FFT round-off only.
  never = dataclasses.replace(always, room_probability=0.0)
  np.testing.assert_array_equal(
      ac.apply_to_stream(stream, never, np.random.default_rng(0), rooms, [],
                         segment_seconds=1.0), stream)


def test_stream_file_keeps_its_ground_truth(tmp_path, rooms):
  source = tmp_path / 'in.wav'
  audio.write_wav(source, 0.1 * np.sin(np.arange(2 * RATE) / 5.0))
  (tmp_path / 'in.csv').write_text('word,start_s,end_s\nyes,0.5,0.9\n')
  noise = render_acoustics.evaluation_noise(seed=0, seconds=2.0)
  render_acoustics.render_stream_file(str(source), str(tmp_path / 'out' / 'x.wav'),
                        ac.Acoustics(), rooms, noise, seed=0,
                        segment_seconds=1.0)
  rendered = audio.read_wav(tmp_path / 'out' / 'x.wav')
  assert rendered.shape == (2 * RATE,)
  assert (tmp_path / 'out' / 'x.csv').read_text() == (
      tmp_path / 'in.csv').read_text()


def test_dataset_render_keeps_names_lengths_and_resumes(tmp_path, rooms):
  source = tmp_path / 'in'
  for word, count in (('yes', 5), ('no', 3)):
    for i in range(count):
      audio.write_wav(source / word / f's{i}_nohash_0.wav',
                      0.2 * np.sin(np.arange(RATE - 100 * i) / (3.0 + i)))
  audio.write_wav(source / sc.BACKGROUND_NOISE_DIR / 'hum.wav', np.zeros(10))
  noise = render_acoustics.evaluation_noise(seed=0, seconds=2.0)
  target = tmp_path / 'out'
  kwargs = dict(acoustics=ac.Acoustics(), rooms=rooms, noise=noise, seed=4,
                batch_size=3, progress=False)
  assert render_acoustics.render_dataset(str(source), str(target), **kwargs) == 8
  first = audio.read_wav(target / 'yes' / 's3_nohash_0.wav')
  assert first.shape == (RATE - 300,)
  assert not np.allclose(first, audio.read_wav(source / 'yes' / 's3_nohash_0.wav'))
  assert (target / sc.BACKGROUND_NOISE_DIR / 'hum.wav').exists()
  os.remove(target / 'yes' / 's3_nohash_0.wav')
  assert render_acoustics.render_dataset(str(source), str(target), **kwargs) == 1
  np.testing.assert_array_equal(
      audio.read_wav(target / 'yes' / 's3_nohash_0.wav'), first)
  with pytest.raises(ValueError, match='no <word>/\\*.wav clips'):
    render_acoustics.render_dataset(str(tmp_path / 'out' / 'yes'),
                                    str(tmp_path / 'x'), **kwargs)


@pytest.mark.parametrize('kind', noise_lib.EVALUATION_KINDS)
def test_evaluation_noise_is_unit_rms_and_seeded(kind):
  a = noise_lib.evaluation_noise(kind, RATE, np.random.default_rng(0))
  b = noise_lib.evaluation_noise(kind, RATE, np.random.default_rng(0))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (RATE,) and np.isfinite(a).all()
  np.testing.assert_allclose(np.sqrt(np.mean(a.astype(np.float64)**2)), 1.0,
                             rtol=1e-5)
  with pytest.raises(ValueError, match="noise kind 'rain'"):
    noise_lib.evaluation_noise('rain', 10, np.random.default_rng(0))


# --- Training batches and the config -------------------------------------------------------

CLIP = 1600


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp('speech')
  rng = np.random.default_rng(0)
  for word in ('yes', 'no', 'cat'):
    for i in range(40):
      audio.write_wav(os.path.join(root, word, f's{i:03d}_nohash_0.wav'),
                      rng.uniform(-0.3, 0.3, CLIP))
  audio.write_wav(os.path.join(root, sc.BACKGROUND_NOISE_DIR, 'noise.wav'),
                  rng.uniform(-0.5, 0.5, 5 * CLIP))
  return sc.load_speech_commands(root, ('yes', 'no'))


def test_batches_with_acoustics_resume_exactly(dataset, rooms):
  kwargs = dict(batch_size=8, seed=3, clip_samples=CLIP, num_threads=1,
                acoustics=ac.Acoustics(), rooms=rooms)
  run = list(pipeline.train_batches(dataset, num_steps=3, **kwargs))
  resumed = next(pipeline.train_batches(dataset, start_step=2, num_steps=1,
                                        **kwargs))
  np.testing.assert_array_equal(run[2]['audio'], resumed['audio'])
  plain = next(pipeline.train_batches(dataset, batch_size=8, seed=3,
                                      clip_samples=CLIP, num_threads=1))
  assert not np.allclose(run[0]['audio'], plain['audio'])
  np.testing.assert_array_equal(run[0]['label'], plain['label'])
  assert np.abs(run[0]['audio']).max() <= 1.0


def test_config_acoustics_is_checked_before_any_work():
  config = kws_config.default_config()
  assert loop.acoustics_settings(config) is None
  config.acoustics.enabled = 1
  assert loop.acoustics_settings(config) == ac.Acoustics()
  assert kws_config.rooms_path(config) == os.path.join(
      'data', 'rooms', 'rooms_300_seed0.npz')
  config.acoustics.noise_probability = 2.0
  with pytest.raises(ValueError, match='noise_probability=2.0'):
    loop.check_config(config)
