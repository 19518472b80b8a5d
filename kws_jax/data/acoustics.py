"""Real-world acoustics: rooms, noise at an SNR, microphones, telephone lines.

Synthetic speech is dry, close and clean; people talk to a device across a
room, over a fan, through a cheap microphone. `Acoustics` puts a clip through,
in this order, each step drawn with its own probability:

  1. room: convolution with a room impulse response from a `RoomBank`
     (image-source simulation of shoebox rooms by pyroomacoustics, computed
     once and cached). Each response starts at its direct path, so the word
     does not move, and the reverberant clip is rescaled to the dry clip's
     RMS. In a clip the reverberant tail past the clip's end is cut, as a
     window of a stream cuts it;
  2. noise: a random crop of a noise recording at SNR ~ U(snr_db) dB over
     the speech's active level (`active_rms`);
  3. microphone: a high-pass at logU(40, 400) Hz, a low-pass at
     U(3.5, 7.8) kHz half of the time, and 0-3 peaking filters of
     U(-10, 10) dB at logU(150, 6000) Hz;
  4. telephone: the 300-3400 Hz band and G.711 mu-law 8-bit companding;
  5. gain ~ U(gain_db) dB, then clipping to [-1, 1] (loud gains clip).

Silence rows (no foreground) get noise at U(silence_dbfs) dBFS RMS instead,
then steps 3-5. All draws come from one numpy Generator in a fixed order
(`draw`), so the output is a pure function of (inputs, generator state).
`apply_to_stream` puts a long recording through the same chain in segments,
each in its own room, for evaluation streams.

    rooms = load_or_make_rooms('data/rooms/train_300_seed0.npz', 300, seed=0)
    out = Acoustics().augment(clips, is_silence, noise, rng, rooms)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import scipy.fft
import scipy.signal
from tqdm.auto import tqdm

from kws_jax.data import audio as audio_lib
from kws_jax.data import npz

_ROOM_FORMAT = 1
_MU = 255.0
_FRAME_SECONDS = 0.02
_ACTIVE_RANGE_DB = 30.0
_MAX_PEAKING_FILTERS = 3


@dataclasses.dataclass(frozen=True)
class RoomBank:
  """Room impulse responses.

  Attributes:
    responses: float32 ``[K, L]``; each starts at its direct path (index 0)
      and is scaled to a direct-path peak of 1.
    rt60: float32 ``[K]``, the reverberation time each room was built for (s).
    distance: float32 ``[K]``, source to microphone (m).
    sample_rate: samples per second.
    seed: the seed the bank was drawn from.
  """

  responses: np.ndarray
  rt60: np.ndarray
  distance: np.ndarray
  sample_rate: int
  seed: int

  def __post_init__(self):
    if self.responses.ndim != 2 or not len(self.responses):
      raise ValueError(f'room responses of shape {self.responses.shape}, '
                       'expected float32 [rooms, samples] with rooms >= 1')
    if self.rt60.shape != (len(self.responses),) or (
        self.distance.shape != (len(self.responses),)):
      raise ValueError(f'{len(self.responses)} room responses but rt60 of '
                       f'shape {self.rt60.shape} and distance of shape '
                       f'{self.distance.shape}')

  def __len__(self) -> int:
    return len(self.responses)


def _draw_room(rng: np.random.Generator, rt60_range: tuple[float, float],
               sample_rate: int):
  """One random shoebox room, source and microphone (pyroomacoustics)."""
  import pyroomacoustics as pra  # pylint: disable=g-import-not-at-top
  while True:
    dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
    rt60 = float(rng.uniform(*rt60_range))
    source, microphone = (rng.uniform(0.5, dims - 0.5) for _ in range(2))
    distance = float(np.linalg.norm(source - microphone))
    if distance < 0.5:
      continue
    try:
      absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # A reverberation time this room cannot have.
      continue
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                       max_order=max_order)
    room.add_source(source)
    room.add_microphone(microphone)
    room.compute_rir()
    return np.asarray(room.rir[0][0], np.float64), rt60, distance


def make_rooms(count: int, seed: int, *, sample_rate: int = audio_lib.SAMPLE_RATE,
               rt60: tuple[float, float] = (0.1, 1.0),
               max_seconds: float = 1.0, progress: bool = True) -> RoomBank:
  """Simulates `count` random rooms (about 0.3 s each on one core).

  Rooms are 3-10 x 3-8 x 2.4-4 m with a reverberation time U(rt60), the
  source and microphone anywhere 0.5 m from the walls and from each other.
  Responses are cut to `max_seconds`.
  """
  if count < 1:
    raise ValueError(f'count={count}, expected at least 1 room')
  if not 0 < rt60[0] <= rt60[1]:
    raise ValueError(f'rt60={rt60}, expected 0 < low <= high seconds')
  length = int(max_seconds * sample_rate)
  responses = np.zeros((count, length), np.float32)
  times, distances = np.zeros(count, np.float32), np.zeros(count, np.float32)
  for k in tqdm(range(count), desc='rooms', unit='room', disable=not progress):
    rng = np.random.default_rng([seed, k])
    response, times[k], distances[k] = _draw_room(rng, rt60, sample_rate)
    direct = int(np.argmax(np.abs(response)))
    response = response[direct:direct + length] / abs(response[direct])
    responses[k, :len(response)] = response
  return RoomBank(responses, times, distances, sample_rate, seed)


def save_rooms(path: str | os.PathLike, rooms: RoomBank) -> None:
  """Writes `rooms` to `path` (.npz), atomically."""
  npz.save(path, _ROOM_FORMAT, responses=rooms.responses, rt60=rooms.rt60,
           distance=rooms.distance, sample_rate=np.int64(rooms.sample_rate),
           seed=np.int64(rooms.seed))


def load_rooms(path: str | os.PathLike) -> RoomBank:
  """Reads a bank written by `save_rooms`.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a room bank of this format.
  """
  data = npz.load(path, 'room bank', ('distance', 'format', 'responses',
                                      'rt60', 'sample_rate', 'seed'),
                  _ROOM_FORMAT)
  return RoomBank(data['responses'], data['rt60'], data['distance'],
                  int(data['sample_rate']), int(data['seed']))


def load_or_make_rooms(path: str | os.PathLike, count: int, seed: int,
                       **kwargs) -> RoomBank:
  """The bank at `path`, made (and saved there) first if it is missing.

  Raises:
    ValueError: the file holds another number of rooms or another seed.
  """
  if os.path.exists(path):
    rooms = load_rooms(path)
    if len(rooms) != count or rooms.seed != seed:
      raise ValueError(f'{path}: {len(rooms)} rooms from seed {rooms.seed}, '
                       f'expected {count} from seed {seed}; delete it or give '
                       'another path')
    return rooms
  rooms = make_rooms(count, seed, **kwargs)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save_rooms(path, rooms)
  return rooms


def active_rms(audio: np.ndarray, sample_rate: int = audio_lib.SAMPLE_RATE
               ) -> np.ndarray:
  """RMS of [B, N] audio over its 20 ms frames within 30 dB of the loudest.

  The level speech has while someone speaks, so an SNR does not depend on
  how much silence surrounds a word. Returns float64 [B] (0 for silence).
  """
  frame = int(_FRAME_SECONDS * sample_rate)
  usable = audio.shape[-1] // frame * frame
  if not usable:
    return np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=-1))
  energy = np.mean(np.square(audio[:, :usable].reshape(
      len(audio), -1, frame), dtype=np.float64), axis=-1)
  loud = energy >= energy.max(axis=-1, keepdims=True) * 10 ** (
      -_ACTIVE_RANGE_DB / 10)
  return np.sqrt(np.sum(energy * loud, -1) / np.maximum(loud.sum(-1), 1))


def reverberate(audio: np.ndarray, responses: np.ndarray, *,
                keep_tail: bool = False) -> np.ndarray:
  """Convolves each row of [B, N] audio with its response of [B, L].

  Returns [B, N] (the tail cut) or, with `keep_tail`, [B, N + L - 1];
  float32, rescaled to each dry row's RMS over its first N samples.
  """
  num_samples = audio.shape[-1]
  length = num_samples + responses.shape[-1] - 1
  size = scipy.fft.next_fast_len(length, real=True)
  wet = scipy.fft.irfft(scipy.fft.rfft(audio, size) *
                        scipy.fft.rfft(responses, size), size)
  wet = wet[:, :length if keep_tail else num_samples]
  dry_rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), -1))
  wet_rms = np.sqrt(np.mean(np.square(wet[:, :num_samples]), -1))
  scale = np.where(wet_rms > 0, dry_rms / np.maximum(wet_rms, 1e-12), 0.0)
  return (wet * scale[:, None]).astype(np.float32)


def peaking_filter(frequency: float, gain_db: float, q: float,
                   sample_rate: int) -> np.ndarray:
  """A peaking EQ biquad (Bristow-Johnson's cookbook): sos [1, 6]."""
  amplitude = 10 ** (gain_db / 40)
  omega = 2 * np.pi * frequency / sample_rate
  alpha = np.sin(omega) / (2 * q)
  b = [1 + alpha * amplitude, -2 * np.cos(omega), 1 - alpha * amplitude]
  a = [1 + alpha / amplitude, -2 * np.cos(omega), 1 - alpha / amplitude]
  return np.array([b + a]) / a[0]


def telephone_filter(sample_rate: int) -> np.ndarray:
  """The 300-3400 Hz telephone band: a 4th-order Butterworth band-pass sos."""
  return scipy.signal.butter(4, [300, 3400], 'bandpass', fs=sample_rate,
                             output='sos')


def mu_law(audio: np.ndarray) -> np.ndarray:
  """G.711 mu-law companding to 8 bits and back, of audio in [-1, 1]."""
  audio = np.clip(audio, -1.0, 1.0)
  compressed = np.sign(audio) * np.log1p(_MU * np.abs(audio)) / np.log1p(_MU)
  quantized = np.round(compressed * 127) / 127
  return (np.sign(quantized) * np.expm1(np.abs(quantized) * np.log1p(_MU))
          / _MU).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Draws:
  """Everything `Acoustics.draw` chose for B rows (see `Acoustics.apply`)."""

  room: np.ndarray  # int [B], -1: no room
  noise: np.ndarray  # int [B], -1: no noise
  noise_offset: np.ndarray  # int [B]
  snr_db: np.ndarray  # float [B]
  silence_dbfs: np.ndarray  # float [B]
  microphone: tuple[np.ndarray | None, ...]  # sos per row, None: none
  telephone: np.ndarray  # bool [B]
  gain_db: np.ndarray  # float [B]


@dataclasses.dataclass(frozen=True)
class Acoustics:
  """Probabilities and ranges of each step (see the module docstring)."""

  room_probability: float = 0.5
  noise_probability: float = 0.8
  snr_db: tuple[float, float] = (0.0, 20.0)
  silence_dbfs: tuple[float, float] = (-70.0, -25.0)
  microphone_probability: float = 0.5
  telephone_probability: float = 0.1
  gain_db: tuple[float, float] = (-12.0, 6.0)
  sample_rate: int = audio_lib.SAMPLE_RATE

  def __post_init__(self):
    for name in ('room_probability', 'noise_probability',
                 'microphone_probability', 'telephone_probability'):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f'acoustics {name}={value}, expected a probability '
                         'in [0, 1]')
    for name in ('snr_db', 'silence_dbfs', 'gain_db'):
      low, high = getattr(self, name)
      if not low <= high:
        raise ValueError(f'acoustics {name}={(low, high)}, expected low <= '
                         'high')

  def draw(self, rng: np.random.Generator, batch_size: int, num_samples: int,
           num_rooms: int, noise_lengths: Sequence[int]) -> Draws:
    """Draws the settings of B rows of N samples, in a fixed order."""
    lengths = np.asarray(noise_lengths, np.int64)
    if np.any(lengths <= num_samples):
      raise ValueError(f'noise recordings of {lengths.min()} samples, '
                       f'expected more than the {num_samples} to cover')
    room = np.where(rng.uniform(size=batch_size) < self.room_probability,
                    rng.integers(0, max(num_rooms, 1), batch_size), -1)
    if not num_rooms:
      room[:] = -1
    noise = np.full(batch_size, -1)
    offset = np.zeros(batch_size, np.int64)
    if len(lengths):
      noisy = rng.uniform(size=batch_size) < self.noise_probability
      noise = np.where(noisy, rng.integers(0, len(lengths), batch_size), -1)
      offset = rng.integers(0, lengths[np.maximum(noise, 0)] - num_samples)
    snr_db = rng.uniform(*self.snr_db, batch_size)
    silence_dbfs = rng.uniform(*self.silence_dbfs, batch_size)
    microphone = tuple(
        self._microphone(rng)
        if rng.uniform() < self.microphone_probability else None
        for _ in range(batch_size))
    telephone = rng.uniform(size=batch_size) < self.telephone_probability
    gain_db = rng.uniform(*self.gain_db, batch_size)
    return Draws(room, noise, offset, snr_db, silence_dbfs, microphone,
                 telephone, gain_db)

  def _microphone(self, rng: np.random.Generator) -> np.ndarray:
    """A random microphone response: sos [sections, 6]."""
    rate = self.sample_rate
    nyquist = rate / 2
    high_pass = float(np.exp(rng.uniform(np.log(40), np.log(400))))
    sections = [scipy.signal.butter(2, high_pass, 'highpass', fs=rate,
                                    output='sos')]
    low_pass = float(rng.uniform(3500, 7800))
    if rng.uniform() < 0.5 and low_pass < 0.95 * nyquist:
      sections.append(scipy.signal.butter(2, low_pass, 'lowpass', fs=rate,
                                          output='sos'))
    for _ in range(int(rng.integers(0, _MAX_PEAKING_FILTERS + 1))):
      centre = float(np.exp(rng.uniform(np.log(150), np.log(6000))))
      gain, q = float(rng.uniform(-10, 10)), float(rng.uniform(0.7, 4.0))
      if centre < 0.9 * nyquist:
        sections.append(peaking_filter(centre, gain, q, rate))
    return np.concatenate(sections)

  def apply(self, audio: np.ndarray, is_silence: np.ndarray, draws: Draws,
            rooms: RoomBank | None, noise: Sequence[np.ndarray], *,
            keep_tail: bool = False) -> np.ndarray:
    """Puts [B, N] float32 audio through the chain `draws` describes.

    Args:
      audio: float32 [B, N] clips (silence rows are ignored).
      is_silence: bool [B]; those rows get noise at `silence_dbfs` only.
      draws: from `draw(rng, B, N, len(rooms), noise lengths)`.
      rooms: the responses `draws.room` indexes (None: no rooms).
      noise: the recordings `draws.noise` indexes, float32 [M_i > N].
      keep_tail: return [B, N + L - 1], the reverberant tails kept (noise
        covers the first N samples only); for streams cut into segments.

    Returns:
      float32 [B, N] (or [B, N + L - 1]) in [-1, 1].
    """
    if rooms is not None and rooms.sample_rate != self.sample_rate:
      raise ValueError(f'room bank at {rooms.sample_rate} Hz, expected '
                       f'{self.sample_rate} Hz')
    batch_size, num_samples = audio.shape
    tail = rooms.responses.shape[-1] - 1 if keep_tail and rooms else 0
    out = np.zeros((batch_size, num_samples + tail), np.float32)
    speech = ~np.asarray(is_silence, bool)
    out[speech, :num_samples] = audio[speech]
    reverberant = speech & (draws.room >= 0)
    if np.any(reverberant):
      wet = reverberate(audio[reverberant],
                        rooms.responses[draws.room[reverberant]],
                        keep_tail=keep_tail)
      out[reverberant] = 0.0
      out[reverberant, :wet.shape[-1]] = wet
    level = active_rms(out[:, :num_samples], self.sample_rate)
    for row in np.flatnonzero(draws.noise >= 0):
      start = draws.noise_offset[row]
      crop = noise[draws.noise[row]][start:start + num_samples]
      crop_rms = float(np.sqrt(np.mean(np.square(crop, dtype=np.float64))))
      if crop_rms == 0:
        continue
      target = (10 ** (draws.silence_dbfs[row] / 20) if not speech[row] else
                level[row] * 10 ** (-draws.snr_db[row] / 20))
      out[row, :num_samples] += np.float32(target / crop_rms) * crop
    for row, sos in enumerate(draws.microphone):
      if sos is not None:
        out[row] = scipy.signal.sosfilt(sos, out[row])
    if np.any(draws.telephone):
      band = telephone_filter(self.sample_rate)
      out[draws.telephone] = mu_law(
          scipy.signal.sosfilt(band, out[draws.telephone], axis=-1))
    out *= (10 ** (draws.gain_db / 20)).astype(np.float32)[:, None]
    return np.clip(out, -1.0, 1.0, out=out)

  def augment(self, audio: np.ndarray, is_silence: np.ndarray,
              noise: Sequence[np.ndarray], rng: np.random.Generator,
              rooms: RoomBank | None = None) -> np.ndarray:
    """`draw` then `apply`: float32 [B, N] in [-1, 1]."""
    draws = self.draw(rng, *audio.shape, len(rooms) if rooms else 0,
                      [len(n) for n in noise])
    return self.apply(audio, is_silence, draws, rooms, noise)


def apply_to_stream(stream: np.ndarray, acoustics: Acoustics,
                    rng: np.random.Generator, rooms: RoomBank | None,
                    noise: Sequence[np.ndarray], *,
                    segment_seconds: float = 30.0,
                    segments_per_batch: int = 8) -> np.ndarray:
  """A long float32 [T] recording through `acoustics`, one segment at a time.

  Each segment of `segment_seconds` gets its own draws (room, noise, SNR,
  microphone, telephone, gain); reverberant tails ring on into the next
  segment (overlap-add), so no word is cut. Segments are rendered
  `segments_per_batch` at a time (memory). Returns float32 [T] in [-1, 1].
  """
  size = int(segment_seconds * acoustics.sample_rate)
  if size < 1:
    raise ValueError(f'segment_seconds={segment_seconds}, expected > 0')
  count = -(-len(stream) // size)
  dry = np.zeros(count * size, np.float32)
  dry[:len(stream)] = stream
  tail = rooms.responses.shape[-1] - 1 if rooms else 0
  out = np.zeros(count * size + tail, np.float32)
  for first in range(0, count, segments_per_batch):
    number = min(segments_per_batch, count - first)
    segments = dry[first * size:(first + number) * size].reshape(number, size)
    draws = acoustics.draw(rng, number, size, len(rooms) if rooms else 0,
                           [len(n) for n in noise])
    rendered = acoustics.apply(segments, np.zeros(number, bool), draws, rooms,
                               noise, keep_tail=True)
    for k, segment in enumerate(rendered):
      start = (first + k) * size
      out[start:start + len(segment)] += segment
  return np.clip(out[:len(stream)], -1.0, 1.0)
