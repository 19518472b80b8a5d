"""kws_streaming's SVDF model: a stack of SVDF layers, then dense layers.

Topology as kws_streaming's ``models/svdf.py`` (after "End-to-end streaming
keyword spotting", Alvarez and Park 2019): one ``Svdf`` per entry of
``svdf_units1`` / ``svdf_memory_size`` / ``svdf_units2`` / ``svdf_dropout``
/ ``svdf_act`` (named ``svdf_<i>``), Flatten over the frames the SVDFs
leave of one clip (kws_streaming's ``Stream(Flatten)``), Dropout, Dense
layers (``units2`` / ``act2``) and the classifier.

``svdf_pad=0`` ('valid') shortens the sequence by ``memory_size - 1`` frames
per layer, so the paper's stack leaves a single frame of a 49-frame clip;
``svdf_pad=1`` ('causal') keeps every frame and flattens all of them.
Streaming keeps ``memory_size - 1`` frames per SVDF and the flattened
window. On raw audio, causal SVDFs need the frontend's
``padding='semicausal'``: where the full-window form pads zeros, a stream
behind the default 'valid' frontend would hold its warm-up frame (the
features of silence), so the first clip of a stream would differ.
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models.parse import check_same_length, parse_list


def default_config() -> ml_collections.ConfigDict:
  """kws_streaming's SVDF flags and defaults (also the paper's flags)."""
  return ml_collections.ConfigDict({
      'name': 'svdf',
      'preprocess': 'raw',
      'label_count': 0,
      'svdf_memory_size': '4,10,10,10,10,10',
      'svdf_units1': '256,256,256,256,256,256',
      'svdf_act': "'relu','relu','relu','relu','relu','relu'",
      'svdf_units2': '128,128,128,128,128,-1',
      'svdf_dropout': '0.0,0.0,0.0,0.0,0.0,0.0',
      'svdf_pad': 0,
      'dropout1': 0.0,
      'units2': '',
      'act2': '',
      'return_softmax': False,
  })


def svdf_padding(value) -> str:
  """kws_streaming's ``svdf_pad`` flag (0 or 1) as a time padding."""
  if value not in (0, 1):  # True and False compare equal to 1 and 0
    raise ValueError(f'model.svdf_pad is {value!r}, expected 0 (valid '
                     'padding) or 1 (causal padding).')
  return 'causal' if value else 'valid'


def check_memory_sizes(field: str, sizes: list[int]) -> None:
  """Raises naming ``field`` unless every memory size is at least 1 frame."""
  for index, size in enumerate(sizes):
    if size < 1:
      raise ValueError(
          f'{field}: entry {index} is {size}, expected a memory of at least '
          '1 frame.')


def check_dropouts(field: str, rates: list[float]) -> None:
  """Raises naming ``field`` unless every dropout rate is in [0, 1)."""
  for index, rate in enumerate(rates):
    if not 0.0 <= rate < 1.0:
      raise ValueError(f'{field}: entry {index} is {rate:g}, expected a '
                       'dropout rate with 0 <= rate < 1.')


def check_frames_left(field: str, sizes: list[int], padding: str,
                      frames: int) -> int:
  """Frames a stack of SVDFs with memory ``sizes`` leaves of ``frames``.

  Raises:
    ValueError: naming ``field`` when valid padding leaves no frame.
  """
  if padding == 'causal':
    return frames
  left = frames - sum(size - 1 for size in sizes)
  if left < 1:
    raise ValueError(
        f'{field} is {",".join(map(str, sizes))}: with valid padding '
        f'(svdf_pad=0) these SVDF layers consume '
        f'{sum(size - 1 for size in sizes)} frames, but one clip has only '
        f'{frames}; expected memory sizes that leave at least one frame '
        f'(sum of memory_size - 1 below {frames}), or svdf_pad=1.')
  return left


def svdf(config: ml_collections.ConfigDict, *, frames: int, features: int,
         label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the SVDF model for features ``[batch, frames, features]``.

  Raises:
    ValueError: for malformed or unequal lists, no SVDF layer, a memory size
      below 1, a dropout rate outside [0, 1), a ``svdf_pad`` other than 0 or
      1, or valid padding that leaves no frame of the clip.
  """
  del features
  stack = {
      'svdf_units1': parse_list('model.svdf_units1', config.svdf_units1,
                                'int'),
      'svdf_memory_size': parse_list('model.svdf_memory_size',
                                     config.svdf_memory_size, 'int'),
      'svdf_units2': parse_list('model.svdf_units2', config.svdf_units2,
                                'int'),
      'svdf_dropout': parse_list('model.svdf_dropout', config.svdf_dropout,
                                 'float'),
      'svdf_act': parse_list('model.svdf_act', config.svdf_act, 'str'),
  }
  dense = {'units2': parse_list('model.units2', config.units2, 'int'),
           'act2': parse_list('model.act2', config.act2, 'str')}
  check_same_length('model', stack)
  check_same_length('model', dense)
  if not stack['svdf_units1']:
    raise ValueError('model.svdf_units1 is empty, expected at least one SVDF '
                     'layer.')
  check_memory_sizes('model.svdf_memory_size', stack['svdf_memory_size'])
  check_dropouts('model.svdf_dropout', stack['svdf_dropout'])
  padding = svdf_padding(config.svdf_pad)
  remaining = check_frames_left('model.svdf_memory_size',
                                stack['svdf_memory_size'], padding, frames)
  body: list[layers.Layer] = [
      layers.Svdf(f'svdf_{i}', units1, memory_size, units2=units2,
                  activation=act, dropout=dropout, time_padding=padding)
      for i, (units1, memory_size, units2, dropout, act) in enumerate(
          zip(*stack.values()))]
  body += [layers.Flatten('flatten', window=remaining),
           layers.Dropout('dropout', config.dropout1)]
  body += [layers.Dense(f'dense_{i}', units, act)
           for i, (units, act) in enumerate(zip(*dense.values()))]
  body.append(layers.Dense('logits', label_count))
  if config.return_softmax:
    body.append(layers.Activation('softmax', 'softmax'))
  return tuple(body)
