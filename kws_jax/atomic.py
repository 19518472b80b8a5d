"""Atomic file writes: readers see the old file or the new one, never a part."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'wb') -> Iterator[IO]:
  """Opens a temporary file beside `path`; renames it onto `path` on success.

  The temporary file is named ".<name>.<random>.tmp" in the same directory (so
  the rename stays on one file system, and globs like "*.wav" never match it),
  and is removed if the body raises. Parent directories are created.

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
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(temporary)
    raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary directory beside `path`; it replaces `path` on success.

  Readers see the old directory or the complete new one. A previous `path`
  is moved aside and deleted only after the new one is in place.
  """
  import shutil  # pylint: disable=g-import-not-at-top
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
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    raise


def write_json(path: str | os.PathLike, value: Any) -> str:
  """Writes `value` as indented JSON and a newline, atomically; returns path."""
  with atomic_write(path, 'w') as file:
    json.dump(value, file, indent=2)
    file.write('\n')
  return os.fspath(path)
