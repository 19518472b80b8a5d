"""Versioned .npz files: written atomically, read back with their fields checked."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from kws_jax import atomic


def save(path: str | os.PathLike, version: int, **arrays) -> None:
  """Writes ``arrays`` and ``format=version`` to ``path``, atomically."""
  with atomic.atomic_write(os.fspath(path), 'wb') as file:
    np.savez(file, format=np.int64(version), **arrays)


def load(path: str | os.PathLike, what: str, fields: Sequence[str],
         version: int) -> dict[str, np.ndarray]:
  """The arrays of a file written by ``save``, by name.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file holds other fields (``format`` included) or
      another format version; the message names ``what`` it should be.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such {what}')
  with np.load(path, allow_pickle=False) as data:
    if set(data.files) != set(fields):
      raise ValueError(f'{path}: holds {sorted(data.files)}, expected a '
                       f'{what} ({", ".join(fields)})')
    if int(data['format']) != version:
      raise ValueError(f'{path}: {what} format {int(data["format"])}, '
                       f'expected {version}')
    return {name: data[name] for name in fields}
