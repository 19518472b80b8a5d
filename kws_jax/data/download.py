"""Download and extract the published Speech Commands archives (needs internet).

    python -m kws_jax.data.download --version v0.02 --root data/

downloads data/speech_commands_v0.02.tar.gz (2.3 GiB) and extracts it into
data/speech_commands_v0.02/, the directory load_speech_commands reads.

- Resumable: bytes go to "<archive>.part"; a rerun asks the server for the
  rest (HTTP Range) and appends, or starts over if the server ignores Range.
- Verified: size and SHA-256 are checked before the archive is renamed into
  place; a mismatch deletes the partial file and raises.
- Atomic: the archive appears only when complete and verified; extraction goes
  to a temporary directory renamed into place at the end, so a directory with
  the final name is always complete.

Checksums: SHA-256 of both archives as published by torchaudio's and other
loaders; the size of v0.02 as ESPnet's recipe pins it. The size of v0.01 is
not pinned (None): its SHA-256 still verifies it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence

import tqdm


@dataclasses.dataclass(frozen=True)
class Archive:
  """A published archive: where it is and what it must hash to."""

  url: str
  sha256: str | None
  size: int | None

  @property
  def filename(self) -> str:
    return self.url.rsplit('/', 1)[-1]


SPEECH_COMMANDS_V1 = Archive(
    url='http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz',
    sha256='743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d',
    size=None,
)
SPEECH_COMMANDS_V2 = Archive(
    url='http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz',
    sha256='af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58',
    size=2428923189,
)
_CHUNK_BYTES = 1 << 20


def speech_commands_archive(version: str) -> Archive:
  """The Archive of Speech Commands "v0.01" or "v0.02"."""
  if version == 'v0.01':
    return SPEECH_COMMANDS_V1
  if version == 'v0.02':
    return SPEECH_COMMANDS_V2
  raise ValueError(
      f"Speech Commands version {version!r}, expected 'v0.01' or 'v0.02'"
  )


def sha256_of_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as file:
    for chunk in iter(lambda: file.read(_CHUNK_BYTES), b''):
      digest.update(chunk)
  return digest.hexdigest()


def verify(path: str, archive: Archive) -> None:
  """Raises ValueError unless `path` has the archive's size and SHA-256."""
  size = os.path.getsize(path)
  if archive.size is not None and size != archive.size:
    raise ValueError(
        f'{path}: {size} bytes, expected {archive.size} bytes for {archive.url}'
    )
  if archive.sha256 is not None:
    actual = sha256_of_file(path)
    if actual != archive.sha256:
      raise ValueError(
          f'{path}: SHA-256 {actual}, expected {archive.sha256} for '
          f'{archive.url}'
      )


def download(
    archive: Archive,
    path: str | os.PathLike,
    *,
    timeout: float = 60.0,
    progress: bool = True,
) -> str:
  """Downloads `archive` to `path`, resuming "<path>.part"; verifies it.

  An existing `path` is verified and kept; if it fails verification it is
  an error (delete it to download again).
  """
  path = os.fspath(path)
  if os.path.exists(path):
    verify(path, archive)
    return path
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  partial = path + '.part'
  have = os.path.getsize(partial) if os.path.exists(partial) else 0
  if archive.size is not None and have > archive.size:
    os.unlink(partial)
    have = 0
  if archive.size is None or have < archive.size:
    _fetch(archive.url, partial, have, timeout, progress)
  try:
    verify(partial, archive)
  except ValueError:
    os.unlink(partial)
    raise
  os.replace(partial, path)
  return path


def _fetch(
    url: str, partial: str, have: int, timeout: float, progress: bool
) -> None:
  """Appends the bytes of `url` after the first `have` to `partial`."""
  request = urllib.request.Request(
      url, headers={'Range': f'bytes={have}-'} if have else {}
  )
  try:
    response = urllib.request.urlopen(request, timeout=timeout)
  except urllib.error.HTTPError as error:
    if error.code == 416:  # Range not satisfiable: the partial file is whole.
      return
    raise OSError(
        f'downloading {url}: HTTP {error.code} {error.reason}'
    ) from error
  except urllib.error.URLError as error:
    raise OSError(
        f'downloading {url}: {error.reason} (is there an internet connection?)'
    ) from error
  with response:
    if have and response.status != 206:
      have = 0  # The server ignored Range and sends everything: start over.
    length = response.headers.get('Content-Length')
    total = have + int(length) if length is not None else None
    with open(partial, 'ab' if have else 'wb') as file, tqdm.tqdm(
        total=total,
        initial=have,
        unit='B',
        unit_scale=True,
        unit_divisor=1024,
        desc=os.path.basename(partial[: -len('.part')]),
        disable=not progress,
    ) as bar:
      for chunk in iter(lambda: response.read(_CHUNK_BYTES), b''):
        file.write(chunk)
        bar.update(len(chunk))


def extract(archive_path: str | os.PathLike, out_dir: str | os.PathLike) -> str:
  """Extracts a .tar.gz into out_dir atomically; a no-op if out_dir exists.

  Members that would land outside out_dir (absolute paths, "..", links
  pointing out) are refused, by tarfile's "data" filter.
  """
  archive_path, out_dir = os.fspath(archive_path), os.fspath(out_dir)
  if os.path.isdir(out_dir):
    return out_dir
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  temporary = tempfile.mkdtemp(
      dir=parent, prefix=f'.{os.path.basename(out_dir)}.', suffix='.tmp'
  )
  try:
    try:
      with tarfile.open(archive_path, 'r:gz') as tar:
        if hasattr(tarfile, 'data_filter'):
          tar.extractall(temporary, filter='data')
        else:  # Python < 3.11.4.
          _check_members(tar, archive_path)
          tar.extractall(temporary)
    except getattr(tarfile, 'FilterError', ()) as error:
      raise ValueError(f'{archive_path}: unsafe member ({error})') from error
    except (tarfile.TarError, EOFError, OSError) as error:
      raise ValueError(
          f'{archive_path}: not a readable .tar.gz archive ({error})'
      ) from error
    os.replace(temporary, out_dir)
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    raise
  return out_dir


def _check_members(tar: tarfile.TarFile, archive_path: str) -> None:
  """Refuses what the "data" filter would: links, devices, paths outside."""
  for member in tar.getmembers():
    name = os.path.normpath(member.name)
    if os.path.isabs(name) or name.startswith('..'):
      raise ValueError(
          f'{archive_path}: member {member.name!r} would extract outside '
          'the target'
      )
    if not (member.isfile() or member.isdir()):
      raise ValueError(
          f'{archive_path}: member {member.name!r} is not a regular file '
          'or directory'
      )


def download_speech_commands(
    root: str | os.PathLike,
    version: str = 'v0.02',
    *,
    archive: Archive | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> str:
  """Downloads and extracts Speech Commands into root; returns the data dir.

  Args:
    root: Where the archive and the extracted directory go.
    version: "v0.01" or "v0.02".
    archive: Override the published Archive (a mirror, or a local test server).

  Returns:
    root/<archive name without .tar.gz>, e.g. root/speech_commands_v0.02.
  """
  archive = archive or speech_commands_archive(version)
  root = os.fspath(root)
  name = archive.filename.removesuffix('.tar.gz')
  out_dir = os.path.join(root, name)
  if os.path.isdir(out_dir):
    return out_dir
  archive_path = download(
      archive,
      os.path.join(root, archive.filename),
      timeout=timeout,
      progress=progress,
  )
  return extract(archive_path, out_dir)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      description='Download and extract Speech Commands.'
  )
  parser.add_argument(
      '--root', required=True, help='directory for the archive and the data'
  )
  parser.add_argument('--version', default='v0.02', choices=['v0.01', 'v0.02'])
  args = parser.parse_args(argv)
  print(download_speech_commands(args.root, args.version))


if __name__ == '__main__':
  main()
