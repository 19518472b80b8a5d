"""Atomic file writes: readers see the old file or the new one, never a part."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any


class NoSpaceError(OSError):
  """The disk filled up while writing; the message names the file and the space left."""


# Below this much free space, a failed write is blamed on a full disk.
_NEARLY_FULL_BYTES = 1 << 20


def _blame_full_disk(path: str, error: BaseException) -> None:
  """Raises NoSpaceError for ``error`` if the disk of ``path`` is full."""
  if isinstance(error, NoSpaceError):
    return
  directory = os.path.dirname(os.path.abspath(path))
  try:
    free = shutil.disk_usage(directory).free
  except OSError:
    return
  full = isinstance(error, OSError) and error.errno in (errno.ENOSPC,
                                                        errno.EDQUOT)
  if full or (isinstance(error, Exception) and free < _NEARLY_FULL_BYTES):
    raise NoSpaceError(
        errno.ENOSPC, f'no space left on the device to write {path} '
        f'({free:,} bytes free in {directory}); free some space and run '
        'again (what was written before is intact)') from error


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'wb') -> Iterator[IO]:
  """Opens a temporary file beside `path`; renames it onto `path` on success.

  The temporary file is named ".<name>.<random>.tmp" in the same directory (so
  the rename stays on one file system, and globs like "*.wav" never match it),
  and is removed if the body raises. Parent directories are created. A write
  that fails on a full disk raises NoSpaceError naming ``path`` and the
  space left.

  Args:
    path: The final file.
    mode: "wb" or "w" (text, UTF-8).
  """
  if mode not in ('wb', 'w'):
    raise ValueError(f"atomic_write: mode={mode!r}, expected 'wb' or 'w'")
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, temporary = tempfile.mkstemp(
      dir=directory, prefix=f'.{os.path.basename(path)}.', suffix='.tmp'
  )
  try:
    encoding = 'utf-8' if mode == 'w' else None
    with os.fdopen(fd, mode, encoding=encoding) as file:
      yield file
    os.chmod(temporary, 0o644)  # mkstemp creates 0600 files.
    os.replace(temporary, path)
  except BaseException as error:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(temporary)
    _blame_full_disk(path, error)
    raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary directory beside `path`; it replaces `path` on success.

  Readers see the old directory or the complete new one. A previous `path`
  is moved aside and deleted only after the new one is in place.
  """
  path = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  temporary = tempfile.mkdtemp(dir=parent,
                               prefix=f'.{os.path.basename(path)}.',
                               suffix='.tmp')
  try:
    yield temporary
    old = None
    if os.path.exists(path):
      old = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(path)}.',
                             suffix='.old')
      os.rmdir(old)
      os.replace(path, old)
    os.replace(temporary, path)
    if old:
      shutil.rmtree(old, ignore_errors=True)
  except BaseException as error:
    shutil.rmtree(temporary, ignore_errors=True)
    _blame_full_disk(path, error)
    raise


def write_json(path: str | os.PathLike, value: Any) -> str:
  """Writes `value` as indented JSON and a newline, atomically; returns path."""
  with atomic_write(path, 'w') as file:
    json.dump(value, file, indent=2)
    file.write('\n')
  return os.fspath(path)


# What atomic_write and atomic_directory leave behind when a process is killed
# before its rename: ".<name>.<random>.tmp" and ".<name>.<random>.old".
_LEFTOVER = re.compile(r'^\..+\.[A-Za-z0-9_]+\.(tmp|old)$')


def remove_leftovers(directory: str | os.PathLike) -> list[str]:
  """Deletes the temporaries a killed write left in ``directory``; returns them.

  Only call it where no other process is writing (e.g. under a run's lock):
  another writer's temporary looks the same.
  """
  directory = os.fspath(directory)
  removed = []
  if not os.path.isdir(directory):
    return removed
  for name in sorted(os.listdir(directory)):
    if not _LEFTOVER.match(name):
      continue
    path = os.path.join(directory, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    removed.append(path)
  return removed


def check_writable_directory(path: str | os.PathLike, what: str) -> str:
  """Creates ``path`` if needed and checks that files can be written in it.

  Runs before long work, so that a read-only or misnamed output fails at
  once rather than after it.

  Args:
    path: the directory.
    what: how the user named it, e.g. "--out".

  Returns:
    ``path``.

  Raises:
    ValueError: ``path`` is a file, cannot be created, or is not writable;
      the message names ``what``, the path and the reason.
  """
  path = os.fspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f'{what} {path} is a file, expected a directory')
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as error:
    raise ValueError(f'{what} {path} is not a writable directory: '
                     f'{error.strerror or error}') from None
  return path
