"""kws_streaming's GRU: recurrent layers on the features, then dense layers.

Topology as kws_streaming's ``models/gru.py``: GRU layers (``gru_units``,
``return_sequences``), Flatten, Dropout, Dense layers (``units1``/``act1``)
and the classifier. ``return_sequences=0`` on the last GRU keeps its output
at the clip's last frame (``LastFrames``); ``1`` flattens its outputs over
the whole clip, as kws_streaming's ``Stream(Flatten)``.

Streaming carries the GRU state from the start of the stream
(kws_streaming's streaming GRU does the same): at the clip's last frame of a
stream started with the clip, the logits equal the non-streaming ones; later
they also remember what came before the clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from kws_jax import layers
from kws_jax.models.parse import check_same_length, parse_list


def default_config() -> ml_collections.ConfigDict:
  """The paper's GRU flags (kws_streaming's defaults are 512 units, sequences)."""
  return ml_collections.ConfigDict({
      'name': 'gru',
      'preprocess': 'raw',
      'label_count': 0,
      'gru_units': '400',
      'return_sequences': '0',
      'stateful': 0,
      'dropout1': 0.1,
      'units1': '128,256',
      'act1': "'linear','relu'",
      'return_softmax': False,
  })


def gru(config: ml_collections.ConfigDict, *, frames: int, features: int,
        label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the GRU model for features ``[batch, frames, features]``.

  Raises:
    ValueError: for malformed or unequal lists, ``stateful=1`` (state carried
      between training batches is not supported), or a GRU after one that
      returns only its last frame.
  """
  del features
  return recurrent_head(config, gru_cells(config), frames=frames,
                        label_count=label_count)


def gru_cells(config: ml_collections.ConfigDict) -> list[layers.Layer]:
  """One GRU per entry of ``gru_units``."""
  units = parse_list('model.gru_units', config.gru_units, 'int')
  return [layers.GRU(f'gru_{i}', n) for i, n in enumerate(units)]


def recurrent_head(config: ml_collections.ConfigDict,
                   cells: Sequence[layers.Layer], *, frames: int,
                   label_count: int) -> tuple[layers.Layer, ...]:
  """``cells`` on vector frames, then Flatten, Dropout, ``units1`` and the logits.

  Shared by the GRU, LSTM and CRNN models (``return_sequences``,
  ``stateful``, ``dropout1``, ``units1``, ``act1``, ``return_softmax``);
  ``frames`` is the number of frames one clip leaves at the first cell.
  """
  if config.stateful:
    raise ValueError('model.stateful is 1; carrying the recurrent state '
                     'between training batches is not supported (streaming '
                     'carries it anyway), use 0.')
  return_sequences = parse_list('model.return_sequences',
                                config.return_sequences, 'int')
  if len(return_sequences) != len(cells):
    raise ValueError(
        f'model.return_sequences has {len(return_sequences)} entries '
        f'({config.return_sequences!r}) but there are {len(cells)} recurrent '
        'layers; expected one entry per layer.')
  dense = {'units1': parse_list('model.units1', config.units1, 'int'),
           'act1': parse_list('model.act1', config.act1, 'str')}
  check_same_length('model', dense)
  if not cells:
    raise ValueError('model: no recurrent layer (empty units list), expected '
                     'at least one.')
  for i in range(1, len(cells)):
    if not return_sequences[i - 1]:
      raise ValueError(
          f'model.return_sequences: {cells[i - 1].name} returns only its last '
          f'frame (0), so {cells[i].name} has no sequence to read; use 1 for '
          'every recurrent layer but the last.')
  body: list[layers.Layer] = list(cells)
  if return_sequences[-1]:
    body.append(layers.Flatten('flatten', window=frames))
  else:
    body += [layers.LastFrames('last_frame', window=frames),
             layers.Flatten('flatten')]
  body.append(layers.Dropout('dropout', config.dropout1))
  body += [layers.Dense(f'dense_{i}', units, act)
           for i, (units, act) in enumerate(zip(*dense.values()))]
  body.append(layers.Dense('logits', label_count))
  if config.return_softmax:
    body.append(layers.Activation('softmax', 'softmax'))
  return tuple(body)
