"""kws_streaming's LSTM: recurrent layers on the features, then dense layers.

Topology as kws_streaming's ``models/lstm.py`` (after "Hello Edge", Zhang et
al. 2017): LSTM layers (``lstm_units``, ``return_sequences``; with
``use_peepholes=1`` tf1's peephole cell projected to ``num_proj``),
Flatten, Dropout, Dense layers (``units1``/``act1``) and the classifier.
Streaming carries the cell state from the start of the stream, as the GRU
does (see ``models.gru``).
"""

from __future__ import annotations

import ml_collections

from kws_jax import layers
from kws_jax.models.gru import recurrent_head
from kws_jax.models.parse import check_same_length, parse_list


def default_config() -> ml_collections.ConfigDict:
  """The paper's ``lstm_peep`` flags (kws_streaming's defaults but stateful 0)."""
  return ml_collections.ConfigDict({
      'name': 'lstm',
      'preprocess': 'raw',
      'label_count': 0,
      'lstm_units': '500',
      'return_sequences': '0',
      'stateful': 0,
      'num_proj': '200',
      'use_peepholes': 1,
      'dropout1': 0.3,
      'units1': '',
      'act1': '',
      'return_softmax': False,
  })


def lstm_cells(config: ml_collections.ConfigDict) -> list[layers.Layer]:
  """One LSTM per entry of ``lstm_units``.

  ``num_proj`` (one entry per layer, or one for all; 0 or -1: none) applies
  only with ``use_peepholes=1``, as in kws_streaming, which ignores it
  otherwise.
  """
  units = parse_list('model.lstm_units', config.lstm_units, 'int')
  if not config.use_peepholes:
    return [layers.LSTM(f'lstm_{i}', n) for i, n in enumerate(units)]
  projections = parse_list('model.num_proj', config.num_proj, 'int')
  if len(projections) == 1:
    projections = projections * len(units)
  check_same_length('model', {'lstm_units': units, 'num_proj': projections})
  return [layers.LSTM(f'lstm_{i}', n, use_peepholes=True,
                      num_proj=p if p > 0 else None)
          for i, (n, p) in enumerate(zip(units, projections))]


def lstm(config: ml_collections.ConfigDict, *, frames: int, features: int,
         label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the LSTM model for features ``[batch, frames, features]``.

  Raises:
    ValueError: for malformed or unequal lists, ``stateful=1``, or an LSTM
      after one that returns only its last frame.
  """
  del features
  return recurrent_head(config, lstm_cells(config), frames=frames,
                        label_count=label_count)
