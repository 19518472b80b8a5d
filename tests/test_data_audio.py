"""WAV reading/writing: formats, conversions with warnings, and errors that name the file."""

import os
import warnings

import numpy as np
import pytest

from kws_jax.data import audio
from kws_jax.atomic import atomic_write


def wav_bytes(
    samples: np.ndarray, sample_rate: int, sample_format: str
) -> bytes:
  """An independent WAV encoder for the tests: samples float [n, channels]."""
  num_frames, channels = samples.shape
  if sample_format == 'pcm8':
    data, tag, bits = (
        np.round(samples * 127 + 128).astype(np.uint8).tobytes(),
        1,
        8,
    )
  elif sample_format == 'pcm16':
    data, tag, bits = np.round(samples * 32767).astype('<i2').tobytes(), 1, 16
  elif sample_format == 'pcm24':
    values = np.round(samples * (2**23 - 1)).astype('<i4').reshape(-1)
    data = (
        np.stack([values & 255, (values >> 8) & 255, (values >> 16) & 255], 1)
        .astype(np.uint8)
        .tobytes()
    )
    tag, bits = 1, 24
  elif sample_format == 'pcm32':
    data, tag, bits = (
        np.round(samples * (2**31 - 1)).astype('<i4').tobytes(),
        1,
        32,
    )
  elif sample_format == 'float32':
    data, tag, bits = samples.astype('<f4').tobytes(), 3, 32
  else:
    data, tag, bits = samples.astype('<f8').tobytes(), 3, 64
  block = channels * bits // 8
  fmt = (
      tag.to_bytes(2, 'little')
      + channels.to_bytes(2, 'little')
      + sample_rate.to_bytes(4, 'little')
      + (sample_rate * block).to_bytes(4, 'little')
      + block.to_bytes(2, 'little')
      + bits.to_bytes(2, 'little')
  )
  # An extra chunk before "data", as some recorders write, must be skipped.
  extra = b'LIST' + (4).to_bytes(4, 'little') + b'INFO'
  body = (
      b'WAVE'
      + b'fmt '
      + len(fmt).to_bytes(4, 'little')
      + fmt
      + extra
      + b'data'
      + len(data).to_bytes(4, 'little')
      + data
  )
  return b'RIFF' + len(body).to_bytes(4, 'little') + body


def write_bytes(path, content: bytes) -> str:
  with open(path, 'wb') as file:
    file.write(content)
  return str(path)


def sine(
    frequency: float, sample_rate: int, seconds: float, amplitude: float = 0.5
) -> np.ndarray:
  return amplitude * np.sin(
      2
      * np.pi
      * frequency
      * np.arange(int(sample_rate * seconds))
      / sample_rate
  )


@pytest.mark.parametrize(
    'sample_format, tolerance',
    [
        ('pcm8', 1 / 100),
        ('pcm16', 1e-4),
        ('pcm24', 1e-6),
        ('pcm32', 1e-8),
        ('float32', 1e-7),
        ('float64', 1e-7),
    ],
)
def test_read_formats(tmp_path, sample_format, tolerance):
  expected = sine(440, 16000, 0.1)
  path = write_bytes(
      tmp_path / 'x.wav', wav_bytes(expected[:, None], 16000, sample_format)
  )
  info = audio.probe_wav(path)
  assert (
      info.sample_rate,
      info.num_channels,
      info.num_frames,
      info.sample_format,
  ) == (16000, 1, 1600, sample_format)
  read = audio.read_wav(path)
  assert read.dtype == np.float32 and read.shape == (1600,)
  np.testing.assert_allclose(read, expected, atol=tolerance)


@pytest.mark.parametrize('num_samples', [1, 999, 16000])
def test_write_read_roundtrip(tmp_path, num_samples):
  expected = (
      np.random.default_rng(num_samples)
      .uniform(-1, 1, num_samples)
      .astype(np.float32)
  )
  audio.write_wav(tmp_path / 'x.wav', expected)
  np.testing.assert_allclose(
      audio.read_wav(tmp_path / 'x.wav'), expected, atol=2**-15
  )
  assert os.listdir(tmp_path) == ['x.wav']  # No temporary file left.


def test_write_clips_out_of_range(tmp_path):
  audio.write_wav(tmp_path / 'x.wav', np.array([-3.0, 0.25, 2.0]))
  np.testing.assert_allclose(
      audio.read_wav(tmp_path / 'x.wav'), [-1.0, 0.25, 1.0], atol=2**-15
  )


def test_write_rejects_2d_and_leaves_nothing(tmp_path):
  with pytest.raises(ValueError, match='x.wav.*expected \\[num_samples\\]'):
    audio.write_wav(tmp_path / 'x.wav', np.zeros((10, 2)))
  assert os.listdir(tmp_path) == []


def test_atomic_write_removes_temporary_on_error(tmp_path):
  with pytest.raises(RuntimeError):
    with atomic_write(tmp_path / 'out.bin') as file:
      file.write(b'partial')
      raise RuntimeError('interrupted')
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    'rate, frequency', [(44100, 1000.0), (22050, 440.0), (8000, 3000.0)]
)
def test_other_rate_is_resampled_with_one_warning(tmp_path, rate, frequency):
  path = write_bytes(
      tmp_path / 'sine.wav',
      wav_bytes(sine(frequency, rate, 1.0)[:, None], rate, 'float32'),
  )
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    read = audio.read_wav(path)
  assert [str(w.message) for w in caught] == [
      f'{path}: resampled from {rate} Hz to 16000 Hz'
  ]
  assert caught[0].category is audio.AudioConversionWarning
  assert abs(len(read) - 16000) <= 1
  spectrum = np.abs(
      np.fft.rfft(read[1000:-1000] * np.hanning(len(read) - 2000))
  )
  peak_hz = np.argmax(spectrum) * 16000 / (len(read) - 2000)
  assert abs(peak_hz - frequency) < 2.0
  assert np.sqrt(np.mean(read[1000:-1000] ** 2)) == pytest.approx(
      0.5 / np.sqrt(2), rel=0.02
  )


def test_stereo_is_mixed_down_with_one_warning(tmp_path):
  left, right = sine(300, 16000, 0.2), sine(500, 16000, 0.2, 0.25)
  path = write_bytes(
      tmp_path / 'stereo.wav',
      wav_bytes(np.stack([left, right], 1), 16000, 'float32'),
  )
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    read = audio.read_wav(path)
  assert [str(w.message) for w in caught] == [
      f'{path}: mixed 2 channels down to mono'
  ]
  np.testing.assert_allclose(read, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(
    'length, expected_tail', [(100, 0.0), (16000, 1.0), (20000, 1.0)]
)
def test_read_clip_pads_or_crops(tmp_path, length, expected_tail):
  audio.write_wav(tmp_path / 'x.wav', np.full(length, 0.5))
  clip = audio.read_clip(tmp_path / 'x.wav', 16000)
  assert clip.shape == (16000,)
  assert clip[0] == pytest.approx(0.5)
  assert clip[-1] == pytest.approx(0.5 * expected_tail)


def test_fit_length():
  np.testing.assert_array_equal(
      audio.fit_length(np.arange(3.0), 5), [0, 1, 2, 0, 0]
  )
  np.testing.assert_array_equal(audio.fit_length(np.arange(5.0), 2), [0, 1])


GOOD = wav_bytes(np.zeros((100, 1)), 16000, 'pcm16')


@pytest.mark.parametrize(
    'content, error, message',
    [
        (b'', audio.AudioFileError, 'empty'),
        (
            b'ID3\x03 this is an mp3, not a wav' * 4,
            audio.AudioFileError,
            'not a WAV file',
        ),
        (b'just some text\n' * 10, audio.AudioFileError, 'not a WAV file'),
        (GOOD[:-50], audio.AudioFileError, 'truncated'),
        (GOOD[: GOOD.index(b'data')], audio.AudioFileError, "no 'data' chunk"),
        (GOOD[: GOOD.index(b'data') + 8], audio.AudioFileError, 'truncated'),
        (
            wav_bytes(np.zeros((0, 1)), 16000, 'pcm16'),
            audio.AudioFileError,
            'no audio samples',
        ),
        (
            GOOD.replace(
                b'fmt \x10\x00\x00\x00\x01\x00', b'fmt \x10\x00\x00\x00\x02\x00'
            ),
            audio.AudioFileError,
            'unsupported WAV sample format',
        ),
    ],
)
def test_bad_files_raise_errors_naming_the_file(
    tmp_path, content, error, message
):
  path = write_bytes(tmp_path / 'bad.wav', content)
  with pytest.raises(error, match=message) as raised:
    audio.read_wav(path)
  assert path in str(raised.value)


def test_missing_file(tmp_path):
  path = str(tmp_path / 'nowhere.wav')
  with pytest.raises(FileNotFoundError, match='nowhere.wav'):
    audio.read_wav(path)


def _with_rate(content: bytes, rate: int) -> bytes:
  start = content.index(b'fmt ') + 12
  return content[:start] + rate.to_bytes(4, 'little') + content[start + 4:]


@pytest.mark.parametrize('rate', [1, 999, 10**9])
def test_absurd_header_rates_are_refused(tmp_path, rate):
  path = write_bytes(tmp_path / 'odd.wav', _with_rate(GOOD, rate))
  with pytest.raises(audio.AudioFileError,
                     match=f'sample rate {rate} Hz .expected 1000-768000'):
    audio.read_wav(path)


@pytest.mark.parametrize('size', [0, 0xFFFFFFFF])
def test_streamed_header_sizes_read_to_the_end_of_the_file(tmp_path, size):
  samples = sine(440, 16000, 0.1)[:, None]
  content = wav_bytes(samples, 16000, 'pcm16')
  at = content.index(b'data') + 4
  streamed = (b'RIFF' + (0xFFFFFFFF).to_bytes(4, 'little') + content[8:at] +
              size.to_bytes(4, 'little') + content[at + 4:] + b'\x00')
  path = write_bytes(tmp_path / 'streamed.wav', streamed)
  # The odd trailing byte is half a frame: not a sample.
  assert audio.probe_wav(path).num_frames == len(samples)
  np.testing.assert_allclose(audio.read_wav(path), samples[:, 0], atol=1e-4)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_float_samples_are_refused_naming_the_time(tmp_path, bad):
  samples = sine(440, 16000, 0.5)
  samples[4000] = bad
  path = write_bytes(tmp_path / 'nan.wav',
                     wav_bytes(samples[:, None], 16000, 'float32'))
  for read in (audio.read_wav, audio.check_wav):
    with pytest.raises(audio.AudioFileError,
                       match=r'nan.wav: 1 NaN or infinite sample\(s\), the '
                       r'first at 0.250 s'):
      read(path)


def test_float_samples_beyond_one_are_clipped_with_a_warning(tmp_path):
  samples = np.array([0.5, 1.5, -3.0, 0.25])[:, None]
  path = write_bytes(tmp_path / 'loud.wav',
                     wav_bytes(samples, 16000, 'float32'))
  with pytest.warns(audio.AudioConversionWarning,
                    match='loud.wav: float samples up to 3 in magnitude '
                    'clipped'):
    read = audio.read_wav(path)
  np.testing.assert_array_equal(read, [0.5, 1.0, -1.0, 0.25])
