"""Parsing of kws_streaming-style list flags such as ``'(3,3),(5,3)'``.

kws_streaming passes layer lists as strings (``--cnn_filters '64,64,128'``,
``--cnn_act "'relu','relu'"``). We accept the same strings, plain Python
sequences, and unquoted names (``'relu,relu'``), and fail with a message that
names the field, the value and the expected form.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

_FORMS = {
    'int': 'comma-separated ints, e.g. 64,64,128',
    'float': 'comma-separated numbers, e.g. 0.1,0.2',
    'pair': 'comma-separated (time, feature) pairs, e.g. (3,3),(5,3)',
    'str': "comma-separated names, e.g. 'relu','relu' or relu,relu",
}


def parse_list(field: str, value: Any, kind: str) -> list[Any]:
  """Parses ``value`` into a list of ``kind`` ('int', 'float', 'pair', 'str').

  Args:
    field: name used in error messages, e.g. 'model.cnn_filters'.
    value: a kws_streaming-style string or a sequence.
    kind: the element type.

  Returns:
    The parsed list (empty for an empty string); pairs are tuples of ints.
  """
  if kind not in _FORMS:
    raise ValueError(f'unknown list kind {kind!r}; expected one of '
                     f'{", ".join(_FORMS)}.')
  items = _split(field, value, kind)
  return [_convert(field, item, kind) for item in items]


def _split(field: str, value: Any, kind: str) -> list[Any]:
  if isinstance(value, str):
    text = value.strip()
    if not text:
      return []
    try:
      parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      if kind == 'str':  # unquoted names: relu,relu
        return [part.strip() for part in text.split(',')]
      raise ValueError(f'{field}: cannot parse {value!r}; expected '
                       f'{_FORMS[kind]}.') from None
    # A single element parses to itself, several to a tuple: '(3,3)' is one
    # pair, '64' one int.
    if kind == 'pair' and _is_pair(parsed):
      return [parsed]
    return list(parsed) if isinstance(parsed, tuple) else [parsed]
  if isinstance(value, Sequence):
    return [value] if kind == 'pair' and _is_pair(value) else list(value)
  return [value]


def _is_pair(value: Any) -> bool:
  return (isinstance(value, Sequence) and not isinstance(value, str) and
          len(value) == 2 and all(isinstance(v, int) for v in value))


def _convert(field: str, item: Any, kind: str) -> Any:
  ok = {
      'int': lambda v: isinstance(v, int) and not isinstance(v, bool),
      'float': lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
      'pair': _is_pair,
      'str': lambda v: isinstance(v, str) and v.strip() != '',
  }[kind]
  if not ok(item):
    raise ValueError(f'{field}: element {item!r} is not valid; expected '
                     f'{_FORMS[kind]}.')
  if kind == 'pair':
    return tuple(int(v) for v in item)
  if kind == 'float':
    return float(item)
  if kind == 'str':
    return item.strip()
  return item


def check_same_length(section: str, lists: Mapping[str, Sequence[Any]]) -> int:
  """Returns the common length of ``lists`` or raises naming each length."""
  lengths = {name: len(values) for name, values in lists.items()}
  if len(set(lengths.values())) > 1:
    described = ', '.join(f'{name} has {n}' for name, n in lengths.items())
    raise ValueError(f'{section}: these lists must have the same length, but '
                     f'{described} entries.')
  return next(iter(lengths.values()), 0)
