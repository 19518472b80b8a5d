"""Parsing of kws_streaming-style list flags such as ``'(3,3),(5,3)'``.

kws_streaming passes layer lists as strings (``--cnn_filters '64,64,128'``,
``--cnn_act "'relu','relu'"``). We accept the same strings, plain Python
sequences, and unquoted names (``'relu,relu'``), and fail with a message that
names the field, the value and the expected form.

The strings are read by a small parser of our own, not ``ast.literal_eval``:
CPython 3.11's AST constructor keeps its recursion depth in interpreter-wide
state, so parsing while another thread builds an AST (3.11's traceback
module does, to place its carets; orbax's checkpoint threads print
tracebacks) can fail with ``SystemError: AST constructor recursion depth
mismatch``.
"""

from __future__ import annotations

import re
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
      parsed = parse_literal(text)
    except ValueError:
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


_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<string>'[^'\\]*'|"[^"\\]*")
  | (?P<punct>[(),\[\]])
)""", re.VERBOSE)


def parse_literal(text: str) -> Any:
  """Reads numbers, quoted strings and nested tuples or lists of them.

  Accepts what ``ast.literal_eval`` accepts of these (``'64,64'`` is a tuple,
  ``'(3,3)'`` a tuple, ``'[1]'`` a list, ``'7'`` an int, ``"'relu'"`` a
  string); raises ValueError on anything else.
  """
  tokens = _tokenize(text)
  value, end = _parse_sequence(tokens, 0, closing=None)
  if end != len(tokens):
    raise ValueError(f'unexpected {tokens[end][1]!r} in {text!r}')
  return value


def _tokenize(text: str) -> list[tuple[str, str]]:
  tokens, position = [], 0
  text = text.rstrip()
  while position < len(text):
    match = _TOKEN.match(text, position)
    if match is None or match.end() == position:
      raise ValueError(f'cannot read {text[position:]!r}')
    kind = match.lastgroup
    tokens.append((kind, match.group(kind)))
    position = match.end()
  return tokens


def _parse_sequence(tokens: list[tuple[str, str]], start: int,
                    closing: str | None) -> tuple[Any, int]:
  """Comma-separated values up to ``closing`` (or the end at top level)."""
  items, position, trailing_comma = [], start, False
  while position < len(tokens) and tokens[position][1] != closing:
    value, position = _parse_value(tokens, position)
    items.append(value)
    trailing_comma = False
    if position < len(tokens) and tokens[position][1] == ',':
      position, trailing_comma = position + 1, True
    elif position < len(tokens) and tokens[position][1] != closing:
      raise ValueError(f'expected a comma, found {tokens[position][1]!r}')
  if closing is not None and position == len(tokens):
    raise ValueError(f'missing {closing!r}')
  if closing == ']':
    return items, position + 1
  if closing is None and len(items) == 1 and not trailing_comma:
    return items[0], position
  if closing == ')' and len(items) == 1 and not trailing_comma:
    return items[0], position + 1  # '(3)' is 3, as in Python
  if not items and closing is None:
    raise ValueError('empty')
  return tuple(items), position + (closing is not None)


def _parse_value(tokens: list[tuple[str, str]],
                 position: int) -> tuple[Any, int]:
  kind, text = tokens[position]
  if kind == 'number':
    is_int = re.fullmatch(r'[-+]?\d+', text) is not None
    return (int(text) if is_int else float(text)), position + 1
  if kind == 'string':
    return text[1:-1], position + 1
  if text in '([':
    return _parse_sequence(tokens, position + 1, ')' if text == '(' else ']')
  raise ValueError(f'unexpected {text!r}')


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
