"""WAV files in and out: 16 kHz mono float32 in [-1, 1], as the models expect.

Reading never converts silently: another sample rate is resampled with soxr and
several channels are averaged, and float samples beyond [-1, 1] are clipped,
each with one AudioConversionWarning that names the file. A file that is
missing, empty, truncated, not a WAV file, at an absurd sample rate or with
NaN or infinite samples raises an error that names it and says what is wrong.
A data chunk size of 0 or 0xFFFFFFFF (what a recorder streaming to a pipe
writes, not knowing the length) means "to the end of the file". Writing is
atomic (16-bit PCM).
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import soxr

from kws_jax import atomic

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000  # One second, the Speech Commands clip length.
# Header rates outside this range are corrupt headers, not audio.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000
# Data chunk sizes a streaming writer leaves when it cannot seek back.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
# (format tag, bits per sample) -> sample format name.
_FORMATS = {
    (_PCM, 8): 'pcm8',
    (_PCM, 16): 'pcm16',
    (_PCM, 24): 'pcm24',
    (_PCM, 32): 'pcm32',
    (_FLOAT, 32): 'float32',
    (_FLOAT, 64): 'float64',
}


class AudioFileError(ValueError):
  """A file that cannot be read as audio; the message names the file."""


class AudioConversionWarning(UserWarning):
  """A file was resampled or mixed down to mono while reading."""


@dataclasses.dataclass(frozen=True)
class WavInfo:
  """What a WAV header says, checked against the file's size.

  Attributes:
    sample_rate: Frames per second.
    num_channels: Samples per frame.
    num_frames: Frames in the data chunk (> 0).
    sample_format: "pcm8", "pcm16", "pcm24", "pcm32", "float32" or "float64".
    data_offset: Byte offset of the first sample in the file.
  """

  sample_rate: int
  num_channels: int
  num_frames: int
  sample_format: str
  data_offset: int


def probe_wav(path: str | os.PathLike) -> WavInfo:
  """Parses and checks the header of a RIFF/WAVE file without decoding it.

  Raises:
    FileNotFoundError: `path` does not exist.
    AudioFileError: the file is empty, not a WAV file, of an unsupported
      sample format or an absurd sample rate, has no samples, or is shorter
      than its header says.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such audio file')
  size = os.path.getsize(path)
  if size == 0:
    raise AudioFileError(
        f'{path}: the file is empty (0 bytes), expected a WAV file'
    )
  with open(path, 'rb') as file:
    header = file.read(12)
    if len(header) < 12 or header[:4] != b'RIFF' or header[8:12] != b'WAVE':
      raise AudioFileError(
          f'{path}: not a WAV file (expected a RIFF/WAVE header, found '
          f'{header[:12]!r})'
      )
    fmt = None
    while True:
      chunk = file.read(8)
      if len(chunk) < 8:
        raise AudioFileError(
            f"{path}: corrupt WAV file, no 'data' chunk before the end"
        )
      chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], 'little')
      if chunk_id == b'fmt ':
        fmt = _parse_fmt(path, file.read(chunk_size))
        file.seek(chunk_size & 1, os.SEEK_CUR)
      elif chunk_id == b'data':
        break
      else:
        file.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)
    data_offset = file.tell()
  if fmt is None:
    raise AudioFileError(
        f"{path}: corrupt WAV file, 'data' chunk before the 'fmt ' chunk"
    )
  sample_format, num_channels, sample_rate, block_align = fmt
  available = size - data_offset
  if chunk_size in _UNKNOWN_SIZES:
    chunk_size = available - available % block_align
  if chunk_size > available:
    raise AudioFileError(
        f'{path}: truncated WAV file, its header promises {chunk_size} '
        'bytes of samples '
        f'but only {available} follow'
    )
  num_frames = chunk_size // block_align
  if num_frames == 0:
    raise AudioFileError(f'{path}: the WAV file contains no audio samples')
  return WavInfo(
      sample_rate, num_channels, num_frames, sample_format, data_offset
  )


def check_wav(path: str | os.PathLike) -> WavInfo:
  """probe_wav, and for a float file also that every sample is finite.

  PCM samples are always finite and within [-1, 1], so only float files are
  decoded; a dataset of PCM clips is checked from its headers alone.

  Raises:
    FileNotFoundError, AudioFileError: see probe_wav; also for NaN or
      infinite samples.
  """
  info = probe_wav(path)
  if info.sample_format.startswith('float'):
    error = non_finite_error(os.fspath(path), _decode(os.fspath(path), info),
                             info.sample_rate)
    if error is not None:
      raise error
  return info


def _parse_fmt(path: str, body: bytes) -> tuple[str, int, int, int]:
  if len(body) < 16:
    raise AudioFileError(
        f"{path}: corrupt WAV file, 'fmt ' chunk of {len(body)} bytes"
    )
  tag = int.from_bytes(body[0:2], 'little')
  num_channels = int.from_bytes(body[2:4], 'little')
  sample_rate = int.from_bytes(body[4:8], 'little')
  block_align = int.from_bytes(body[12:14], 'little')
  bits = int.from_bytes(body[14:16], 'little')
  if tag == _EXTENSIBLE and len(body) >= 26:
    tag = int.from_bytes(
        body[24:26], 'little'
    )  # First bytes of the sub-format GUID.
  sample_format = _FORMATS.get((tag, bits))
  if sample_format is None:
    raise AudioFileError(
        f'{path}: unsupported WAV sample format (format tag {tag}, '
        f'{bits} bits); '
        'expected PCM 8/16/24/32-bit or IEEE float 32/64-bit'
    )
  if (
      num_channels < 1
      or sample_rate < 1
      or block_align != num_channels * bits // 8
  ):
    raise AudioFileError(
        f'{path}: corrupt WAV header ({num_channels} channels, '
        f'{sample_rate} Hz, '
        f'block align {block_align})'
    )
  if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
    raise AudioFileError(
        f'{path}: corrupt WAV header, sample rate {sample_rate} Hz (expected '
        f'{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)'
    )
  return sample_format, num_channels, sample_rate, block_align


def _decode(path: str, info: WavInfo) -> np.ndarray:
  """Returns float32 [num_frames, num_channels] in [-1, 1]."""
  count = info.num_frames * info.num_channels
  offset = info.data_offset
  if info.sample_format == 'pcm8':
    samples = (
        np.fromfile(path, np.uint8, count, offset=offset).astype(np.float32)
        - 128
    ) / 128
  elif info.sample_format == 'pcm16':
    samples = (
        np.fromfile(path, '<i2', count, offset=offset).astype(np.float32)
        / 2**15
    )
  elif info.sample_format == 'pcm24':
    raw = (
        np.fromfile(path, np.uint8, 3 * count, offset=offset)
        .reshape(-1, 3)
        .astype(np.int32)
    )
    values = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    values = np.where(values >= 2**23, values - 2**24, values)
    samples = values.astype(np.float32) / 2**23
  elif info.sample_format == 'pcm32':
    samples = (np.fromfile(path, '<i4', count, offset=offset) / 2**31).astype(
        np.float32
    )
  else:
    dtype = '<f4' if info.sample_format == 'float32' else '<f8'
    samples = np.fromfile(path, dtype, count, offset=offset).astype(np.float32)
  return samples.reshape(info.num_frames, info.num_channels)


def non_finite_error(path: str, samples: np.ndarray, sample_rate: int,
                     start_frame: int = 0) -> AudioFileError | None:
  """The error for NaN or infinite ``samples [frames, channels]``; None if finite.

  Only float WAV files can hold them. ``start_frame`` is where ``samples``
  start in the file (for a chunk of it).
  """
  bad = ~np.isfinite(samples)
  if not bad.any():
    return None
  first = start_frame + int(np.argmax(bad.any(axis=-1)))
  return AudioFileError(
      f'{path}: {int(bad.sum())} NaN or infinite sample(s), the first at '
      f'{first / sample_rate:.3f} s; expected finite audio in [-1, 1]'
  )


def clip_to_unit(path: str, samples: np.ndarray) -> np.ndarray:
  """Clips float samples beyond [-1, 1], with an AudioConversionWarning."""
  peak = float(np.max(np.abs(samples))) if samples.size else 0.0
  if peak <= 1.0:
    return samples
  warnings.warn(
      f'{path}: float samples up to {peak:.3g} in magnitude clipped to '
      '[-1, 1]',
      AudioConversionWarning,
      stacklevel=3,
  )
  return np.clip(samples, -1.0, 1.0)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
  """Resamples float32 [num_samples] with soxr's high-quality filter."""
  if from_rate == to_rate:
    return audio
  return soxr.resample(audio, from_rate, to_rate).astype(np.float32)


def read_wav(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
  """Reads a WAV file as mono float32 [num_samples] in [-1, 1] at `sample_rate`.

  Several channels are averaged, another rate is resampled and float
  samples beyond [-1, 1] are clipped, each with an AudioConversionWarning
  naming the file and what was converted.

  Raises:
    FileNotFoundError, AudioFileError: see probe_wav; also for NaN or
      infinite samples.
  """
  path = os.fspath(path)
  info = probe_wav(path)
  samples = _decode(path, info)
  if info.sample_format.startswith('float'):
    error = non_finite_error(path, samples, info.sample_rate)
    if error is not None:
      raise error
    samples = clip_to_unit(path, samples)
  if info.num_channels > 1:
    warnings.warn(
        f'{path}: mixed {info.num_channels} channels down to mono',
        AudioConversionWarning,
        stacklevel=2,
    )
  audio = samples.mean(axis=1) if info.num_channels > 1 else samples[:, 0]
  if info.sample_rate != sample_rate:
    warnings.warn(
        f'{path}: resampled from {info.sample_rate} Hz to {sample_rate} Hz',
        AudioConversionWarning,
        stacklevel=2,
    )
    audio = np.clip(resample(audio, info.sample_rate, sample_rate), -1.0, 1.0)
  return np.ascontiguousarray(audio, np.float32)


def fit_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
  """Crops the end of, or appends zeros to, [n] audio to get [num_samples]."""
  if len(audio) >= num_samples:
    return audio[:num_samples]
  return np.pad(audio, (0, num_samples - len(audio)))


def read_clip(
    path: str | os.PathLike,
    num_samples: int = CLIP_SAMPLES,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
  """read_wav, then fit_length: float32 [num_samples] (like TF's decode_wav)."""
  return fit_length(read_wav(path, sample_rate), num_samples)


def write_wav(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> None:
  """Writes mono float audio [num_samples] as 16-bit PCM, atomically.

  Samples are clipped to [-1, 1] and scaled by 2**15, so that read_wav
  returns the written values to within 2**-15.
  """
  audio = np.asarray(audio)
  if audio.ndim != 1:
    raise ValueError(
        f'write_wav({os.fspath(path)}): audio of shape {audio.shape}, '
        'expected [num_samples]'
    )
  pcm = np.clip(
      np.round(audio.astype(np.float64) * 2**15), -(2**15), 2**15 - 1
  ).astype('<i2')
  data = pcm.tobytes()
  header = b''.join(
      [
          b'RIFF',
          (36 + len(data)).to_bytes(4, 'little'),
          b'WAVE',
          b'fmt ',
          (16).to_bytes(4, 'little'),
          _PCM.to_bytes(2, 'little'),
          (1).to_bytes(2, 'little'),
          int(sample_rate).to_bytes(4, 'little'),
          (2 * int(sample_rate)).to_bytes(4, 'little'),
          (2).to_bytes(2, 'little'),
          (16).to_bytes(2, 'little'),
          b'data',
          len(data).to_bytes(4, 'little'),
      ]
  )
  with atomic.atomic_write(path, 'wb') as file:
    file.write(header)
    file.write(data)
